#!/usr/bin/python3
"""Stand-ins for systemctl, systemd-run and systemd-creds, for install tests where systemd is not PID 1.

The install tests (tests/packaging/hostns.py) bind-mount this file over /usr/bin/systemctl,
/usr/bin/systemd-run and /usr/bin/systemd-creds inside a private mount and network namespace; it
acts on its name. It does what install.sh and `vigatra doctor` need of systemd, the way systemd
does it, and nothing more:

- systemctl daemon-reload | enable | disable | start | stop | restart | is-active | show: a "unit" is
  the process of the unit file's ExecStart= (with its drop-ins in lexical order; an empty assignment
  clears a list, as systemd does), run as User=/Group= in WorkingDirectory= with UMask=, and with
  $CREDENTIALS_DIRECTORY holding each LoadCredentialEncrypted= credential decrypted.
- systemd-run --uid --gid -p PROPERTY=VALUE ... COMMAND: the same for a transient command (--wait --pipe).
- systemd-creds encrypt|decrypt --name=NAME: NOT encryption. The real tool seals with the host key or
  a TPM2; this stand-in only wraps the bytes with their name so the plumbing can be tested. Nothing
  secret is ever protected by it: it exists only inside the tests' namespaces.

State (pid files, enabled units, logs) lives in /run/vigatra-standin, which the harness binds to a
directory of the test. Standard library only: it runs under the host's /usr/bin/python3.
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATE = Path("/run/vigatra-standin")
UNIT_DIR = Path("/etc/systemd/system")
CRED_MAGIC = b"VIGATRA-STANDIN-CREDENTIAL\n"
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(line: str) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / "calls.log").open("a") as handle:
        handle.write(f"{time.time():.3f} {line}\n")


# -- credentials --------------------------------------------------------------------------------


def seal(name: str, data: bytes) -> bytes:
    return CRED_MAGIC + name.encode() + b"\n" + base64.b64encode(data) + b"\n"


def unseal(name: str, blob: bytes) -> bytes:
    if not blob.startswith(CRED_MAGIC):
        raise SystemExit(f"systemd-creds: {name}: not a credential")
    stored, encoded = blob[len(CRED_MAGIC):].split(b"\n", 2)[:2]
    if stored.decode() != name:
        raise SystemExit(f"systemd-creds: embedded name {stored.decode()!r} does not match {name!r}")
    return base64.b64decode(encoded)


def creds_main(args: list[str]) -> int:
    verb, rest = args[0], args[1:]
    name = next((a.split("=", 1)[1] for a in rest if a.startswith("--name=")), "")
    paths = [a for a in rest if not a.startswith("--")]
    source, target = paths[0], paths[1]
    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    out = seal(name, data) if verb == "encrypt" else unseal(name, data)
    if target == "-":
        sys.stdout.buffer.write(out)
    else:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(out)
    return 0


def load_credentials(entries: list[str], uid: int, gid: int) -> str:
    """Decrypt each name:path into a fresh directory only the user can read; return its path."""
    directory = Path(tempfile.mkdtemp(prefix="creds-", dir=STATE))
    for entry in entries:
        name, path = entry.split(":", 1)
        target = directory / name
        target.write_bytes(unseal(name, Path(path).read_bytes()))
        os.chown(target, uid, gid)
        target.chmod(0o400)
    os.chown(directory, uid, gid)
    directory.chmod(0o500)
    return str(directory)


# -- units ----------------------------------------------------------------------------------------


def unit_properties(unit: str) -> dict[str, list[str]]:
    files = [UNIT_DIR / unit]
    dropins = UNIT_DIR / f"{unit}.d"
    if dropins.is_dir():
        files += sorted(dropins.glob("*.conf"))
    props: dict[str, list[str]] = {}
    for file in files:
        if not file.exists():
            continue
        for raw in file.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";", "[")) or "=" not in line:
                continue
            key, value = line.split("=", 1)
            if value == "":
                props[key] = []  # an empty assignment resets a list
            else:
                props.setdefault(key, []).append(value)
    return props


def one(props: dict[str, list[str]], key: str, default: str = "") -> str:
    values = props.get(key) or [default]
    return values[-1]


def spawn(command: list[str], user: str, group: str, cwd: str, umask: str, credentials: list[str],
          *, log_path: Path | None = None, pipe: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``command`` as the unit would; returns the process and its credentials directory ('' if none)."""
    entry = pwd.getpwnam(user)
    gid = entry.pw_gid if not group else (int(group) if group.isdigit() else _gid(group))
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": entry.pw_dir}
    creds = load_credentials(credentials, entry.pw_uid, gid) if credentials else ""
    if creds:
        env["CREDENTIALS_DIRECTORY"] = creds
    out = None if pipe else (log_path.open("ab") if log_path else subprocess.DEVNULL)
    process = subprocess.Popen(command, user=entry.pw_uid, group=gid, extra_groups=[], cwd=cwd or "/", env=env,
                               umask=int(umask or "0077", 8), stdin=None if pipe else subprocess.DEVNULL,
                               stdout=out, stderr=out if out is not None else None, start_new_session=not pipe)
    return process, creds


def _gid(group: str) -> int:
    import grp

    return grp.getgrnam(group).gr_gid


def pid_of(unit: str) -> int | None:
    path = STATE / f"{unit}.pid"
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    try:  # a zombie (exited, not yet reaped by its parent, which has gone) is not running
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return None
    except OSError:
        return None
    return pid


def start(unit: str) -> int:
    if pid_of(unit):
        return 0
    props = unit_properties(unit)
    exec_start = one(props, "ExecStart")
    if not exec_start:
        print(f"Failed to start {unit}: Unit {unit} not found.", file=sys.stderr)
        return 5
    process, creds = spawn(exec_start.split(), one(props, "User", "root"), one(props, "Group"),
                           one(props, "WorkingDirectory", "/"), one(props, "UMask", "0022"),
                           props.get("LoadCredentialEncrypted", []), log_path=STATE / f"{unit}.log")
    (STATE / f"{unit}.pid").write_text(str(process.pid))
    (STATE / f"{unit}.creds").write_text(creds)
    # Type=exec: started once the program runs; a process that dies at once is a failed start.
    time.sleep(0.5)
    if process.poll() is not None:
        print(f"Job for {unit} failed (exit {process.returncode}). See {STATE / (unit + '.log')}", file=sys.stderr)
        return 1
    return 0


def stop(unit: str) -> int:
    pid = pid_of(unit)
    if pid is None:
        return 0
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 40  # TimeoutStopSec
    while time.monotonic() < deadline and pid_of(unit):
        time.sleep(0.2)
    if pid_of(unit):
        os.killpg(pid, signal.SIGKILL)
    (STATE / f"{unit}.pid").unlink(missing_ok=True)
    creds_file = STATE / f"{unit}.creds"
    if creds_file.exists() and creds_file.read_text():
        shutil.rmtree(creds_file.read_text(), ignore_errors=True)  # systemd drops the ramfs with the unit
    creds_file.unlink(missing_ok=True)
    return 0


def systemctl_main(args: list[str]) -> int:
    quiet = "--quiet" in args or "-q" in args
    words = [a for a in args if not a.startswith("-")]
    verb = words[0] if words else "status"
    units = words[1:]
    if verb == "daemon-reload":
        return 0
    if verb == "show":
        prop = args[args.index("--property") + 1] if "--property" in args else ""
        values = unit_properties(units[0]).get(prop, [])
        print(" ".join(values))
        return 0
    code = 0
    for unit in units:
        if verb == "enable":
            (STATE / f"{unit}.enabled").touch()
        elif verb == "disable":
            (STATE / f"{unit}.enabled").unlink(missing_ok=True)
        elif verb == "start":
            code = code or start(unit)
        elif verb == "stop":
            code = code or stop(unit)
        elif verb == "restart":
            stop(unit)
            code = code or start(unit)
        elif verb == "is-active":
            active = pid_of(unit) is not None
            if not quiet:
                print("active" if active else "inactive")
            code = code or (0 if active else 3)
        elif verb == "is-enabled":
            enabled = (STATE / f"{unit}.enabled").exists()
            if not quiet:
                print("enabled" if enabled else "disabled")
            code = code or (0 if enabled else 1)
        else:
            print(f"systemctl stand-in: {verb} is not supported", file=sys.stderr)
            return 1
    return code


def run_main(args: list[str]) -> int:
    uid, gid, props = "root", "", []
    rest = list(args)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        if option in ("-p", "--property"):
            props.append(rest.pop(0))
        elif option.startswith("--uid="):
            uid = option.split("=", 1)[1]
        elif option.startswith("--gid="):
            gid = option.split("=", 1)[1]
        elif option.startswith(("--description=", "--service-type=", "--unit=")) or option in (
                "--quiet", "--wait", "--pipe", "--collect", "-q", "-P"):
            continue
        else:
            print(f"systemd-run stand-in: option {option} is not supported", file=sys.stderr)
            return 1
    settings: dict[str, list[str]] = {}
    for prop in props:
        key, value = prop.split("=", 1)
        settings.setdefault(key, []).append(value)
    process, creds = spawn(rest, uid, gid, one(settings, "WorkingDirectory", "/"), one(settings, "UMask", "0022"),
                           settings.get("LoadCredentialEncrypted", []), pipe=True)
    try:
        return process.wait()
    finally:
        if creds:
            shutil.rmtree(creds, ignore_errors=True)


def main() -> int:
    name = Path(sys.argv[0]).name
    log(" ".join([name, *sys.argv[1:]]))
    STATE.mkdir(parents=True, exist_ok=True)
    if name == "systemctl":
        return systemctl_main(sys.argv[1:])
    if name == "systemd-run":
        return run_main(sys.argv[1:])
    if name == "systemd-creds":
        return creds_main(sys.argv[1:])
    print(f"systemd stand-in: unknown name {name}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
