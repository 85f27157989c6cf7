"""`vigatra serve` boots, answers /healthz and stops cleanly on SIGTERM under the unit's system-call
filter and no-W^X rule (emulated with seccomp, as no systemd runs here). A library that starts
needing a filtered call (or W+X memory) fails here instead of on a customer's server."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.packaging.test_unit import directives
from tests.packaging.tools import IN_CI, UNIT, require_tool

LAUNCHER = Path(__file__).with_name("seccomp_launch.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def require_seccomp_module() -> None:
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True, check=False)
    if probe.returncode != 0:
        why = f"{SYSTEM_PYTHON} has no seccomp module (Debian package python3-seccomp)"
        if IN_CI:
            pytest.fail(why, pytrace=False)
        pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_and_stops_under_the_units_syscall_filter(tmp_path: Path) -> None:
    require_tool("systemd-analyze", "systemd")
    require_seccomp_module()
    vigatra = str(Path(sys.executable).with_name("vigatra"))
    data = tmp_path / "data"
    init = subprocess.run([vigatra, "init", "--data-dir", str(data), "--key-provider", "file",
                           "--key-file", str(tmp_path / "kek.key"), "--yes"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert init.returncode == 0, init.stdout + init.stderr
    port = free_port()
    stop_timeout = int(directives(UNIT.read_text())["TimeoutStopSec"][0])
    server = subprocess.Popen([SYSTEM_PYTHON, str(LAUNCHER), vigatra, "--config", str(data / "vigatra.yaml"),
                               "serve", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    health: dict[str, str] | None = None
    stopped: int | None = None
    try:
        deadline = time.monotonic() + 60
        while health is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                    health = json.loads(response.read())
            except OSError:
                time.sleep(0.3)
        if health is not None:
            server.send_signal(signal.SIGTERM)
            stopped = server.wait(timeout=stop_timeout)
    finally:
        if server.poll() is None:
            server.kill()
        _out, log = server.communicate()
    assert health is not None and health["status"] == "ok", f"/healthz: {health}; serve said: {log[-3000:]}"
    assert stopped == 0, f"exit {stopped} after SIGTERM: {log[-3000:]}"
    assert "Operation not permitted" not in log
