"""A scratch "server" for the install tests: a private network and mount namespace over directories of
the test, so install.sh runs for real as root — users, /etc, /opt, /var/lib, the unit — without
touching this machine and without any network (`unshare --net`: only a loopback device).

Inside the namespace:
- /etc is a copy of this machine's /etc (useradd, the unit and the configuration change only the copy);
- /opt, /var/lib and /var/backups are empty directories of the test (/tmp is this machine's, so the
  test's release directories stay visible);
- /run is a fresh tmpfs with /run/systemd/system (what sd_booted() looks for) unless ``systemd=False``;
- /usr/bin/systemctl, systemd-run and systemd-creds are tests/packaging/systemd_standin.py (systemd is
  not PID 1 here; the stand-ins start units as their User= with their credentials, like systemd).

One holder process keeps the namespace alive; each command enters it with nsenter, so a service a
stand-in started keeps running (and listening on the namespace's loopback) between commands.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.packaging.tools import IN_CI

STANDIN = Path(__file__).with_name("systemd_standin.py")
TOOLS = ("unshare", "nsenter", "useradd", "runuser", "ip", "openssl")


def available() -> str:
    """Why the namespace cannot be made here ('' when it can)."""
    if os.geteuid() != 0:
        return "needs root (user, mount and network namespaces)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (packaging/dev/install-test-tools.sh installs them)"
    probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"unshare refused: {probe.stderr.strip()}"
    return ""


def require() -> None:
    import pytest

    why = available()
    if why:
        if IN_CI:
            pytest.fail(f"the install tests cannot run: {why}", pytrace=False)
        pytest.skip(why)


class Host:
    def __init__(self, root: Path, *, systemd: bool = True) -> None:
        self.root = root
        self.systemd = systemd
        for name in ("opt", "var-lib", "var-backups", "standin"):
            (root / name).mkdir(parents=True, exist_ok=True)
        if not (root / "etc").exists():
            subprocess.run(["cp", "-a", "/etc", str(root / "etc")], check=True)
            # The machine's own Vigatra (if any) and units are not part of the scratch host.
            for leftover in ("vigatra", "systemd/system/vigatra.service", "systemd/system/vigatra.service.d"):
                path = root / "etc" / leftover
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        self.holder: subprocess.Popen[str] | None = None

    def _setup_script(self) -> str:
        r = self.root
        lines = [
            "set -e",
            "ip link set lo up",
            f"mount --bind {r}/etc /etc",
            f"mount --bind {r}/opt /opt",
            f"mount --bind {r}/var-lib /var/lib",
            "mkdir -p /var/backups" if Path("/var/backups").is_dir() else "true",
            f"mount --bind {r}/var-backups /var/backups",
            "mount -t tmpfs -o mode=0755 tmpfs /run",
            "mkdir -p /run/vigatra-standin",
            f"mount --bind {r}/standin /run/vigatra-standin",
        ]
        if self.systemd:
            lines.append("mkdir -p /run/systemd/system")
        for tool in ("systemctl", "systemd-run", "systemd-creds"):
            lines.append(f"[ -e /usr/bin/{tool} ] && mount --bind {STANDIN} /usr/bin/{tool}")
        lines += [f"touch {r}/ready", "exec sleep 86400"]
        return "\n".join(lines)

    def start(self) -> Host:
        ready = self.root / "ready"
        ready.unlink(missing_ok=True)
        self.holder = subprocess.Popen(["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c",
                                        self._setup_script()], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.holder.poll() is not None or time.monotonic() > deadline:
                _out, err = self.holder.communicate(timeout=5)
                raise RuntimeError(f"the scratch host did not start: {err.strip()}")
            time.sleep(0.05)
        return self

    def run(self, script: str, *, timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a shell script as root inside the namespace."""
        assert self.holder is not None, "start() first"
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "HOME": "/root"}
        return subprocess.run(["nsenter", "-t", str(self.holder.pid), "-n", "-m", "--", "sh", "-c", script],
                              capture_output=True, text=True, timeout=timeout, check=False, input=input, env=env,
                              cwd="/")

    def stop(self) -> None:
        if self.holder is None:
            return
        # Stop any unit a stand-in left running, then the holder (the namespace goes with it).
        for pid_file in (self.root / "standin").glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        self.holder.kill()
        self.holder.wait(timeout=30)
        self.holder = None

    def path(self, inside: str) -> Path:
        """Where a path of the scratch host lives on this machine."""
        for prefix, name in (("/etc/", "etc"), ("/opt/", "opt"), ("/var/lib/", "var-lib"),
                             ("/var/backups/", "var-backups")):
            if inside.startswith(prefix):
                return self.root / name / inside[len(prefix):]
        raise ValueError(f"{inside} is not on the scratch host's own directories")
