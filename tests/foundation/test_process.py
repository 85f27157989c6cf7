"""The one process: `vigatra serve` with a config file, /healthz, the login page, SIGTERM, a taken port;
and `vigatra demo`, the README's main job."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import requests

from tests.support.proc import VIGATRA, free_port, install, serve


def test_serve_health_login_and_clean_shutdown(tmp_path: Path) -> None:
    installed = install(tmp_path, f"sqlite:///{tmp_path / 'v.db'}")
    server = serve(installed)
    try:
        deadline = time.time() + 20
        while True:
            health = requests.get(f"{server.url}/healthz", timeout=5)
            if health.status_code == 200 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "database": "ok", "scheduler": "running"}
        login = requests.get(f"{server.url}/login", timeout=5)
        assert login.status_code == 200
        assert "Sign in" in login.text
        assert "Server" not in login.headers
        assert "no-store" in login.headers["Cache-Control"]
        assert "frame-ancestors 'none'" in login.headers["Content-Security-Policy"]
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0
    stderr = server.process.stderr.read() if server.process.stderr else ""
    assert "Traceback" not in stderr


def test_sigterm_stops_a_busy_server(tmp_path: Path) -> None:
    """SIGTERM while connections are being read must stop the process: waitress swallows any exception a
    signal handler raises inside a connection handler unless it is a SystemExit (the process would keep
    serving, and systemd would have to kill it)."""
    installed = install(tmp_path, f"sqlite:///{tmp_path / 'v.db'}")
    for _ in range(3):
        server = serve(installed)
        stop = threading.Event()

        def hammer(url: str = server.url, stop: threading.Event = stop) -> None:
            with requests.Session() as client:  # keep-alive: the loop is busy reading this connection
                while not stop.is_set():
                    try:
                        client.get(f"{url}/healthz", timeout=2)
                    except requests.RequestException:
                        return

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        try:
            assert server.stop(signal.SIGTERM, timeout=15) == 0
        finally:
            stop.set()
            for thread in threads:
                thread.join()


def test_serve_on_a_taken_port_is_one_line(tmp_path: Path) -> None:
    installed = install(tmp_path, f"sqlite:///{tmp_path / 'v.db'}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = installed.run("serve", "--port", str(port), check=False)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("vigatra:")]
    assert lines == [f"vigatra: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert "Traceback" not in result.stderr


def test_demo_serves_the_login_page(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen([*VIGATRA, "demo", "--port", str(port), "--data-dir", str(tmp_path / "demo")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        deadline = time.time() + 120
        assert process.stdout is not None
        while time.time() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        text = "".join(output)
        assert f"Vigatra demo is running at http://127.0.0.1:{port}/login" in text, text[-3000:]
        logins = re.findall(r"login (\w+) +\((\w+) *\) password: (\S+)", text)
        assert {role for _user, role, _pw in logins} == {"Admin", "Compliance", "Viewer"}
        page = requests.get(f"http://127.0.0.1:{port}/login", timeout=10)
        assert page.status_code == 200
        admin_password = next(pw for user, _role, pw in logins if user == "admin")
        token = requests.post(f"http://127.0.0.1:{port}/api/v1/auth/token", timeout=10,
                              json={"username": "admin", "password": admin_password})
        assert token.status_code == 200
        employees = requests.get(f"http://127.0.0.1:{port}/api/v1/employees", timeout=10,
                                 headers={"Authorization": f"Bearer {token.json()['access_token']}"})
        assert employees.json()["total"] == 40
        departments = {e["department"] for e in employees.json()["employees"]}
        assert len(departments) >= 5
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        _demo_shows_markets_and_a_pending_request(port, headers, process)
        config = tmp_path / "demo" / "vigatra.yaml"
        status = subprocess.run([*VIGATRA, "--config", str(config), "status"], capture_output=True, text=True,
                                check=False, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=90)  # an in-flight poll or pricing run finishes first (a loaded machine)
        except subprocess.TimeoutExpired:
            process.kill()
    assert process.returncode == 0
    assert (tmp_path / "demo" / "vigatra.yaml").exists()  # a directory the user named is never deleted


def _drain(stream: Any) -> None:
    for _line in stream:
        pass


def _demo_shows_markets_and_a_pending_request(port: int, headers: dict[str, str], process: Any) -> None:
    """A pre-clearance request waits from the start; after the first polls the prediction positions are recorded
    and the one on Acme's earnings (the restricted list names "Acme") has raised an alert."""
    # Keep reading the demo's log so a full pipe never blocks it while it polls.
    threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
    base = f"http://127.0.0.1:{port}/api/v1"
    queue = requests.get(f"{base}/overview", timeout=10, headers=headers).json()["panels"]["preclearance"]
    assert queue["preclearance_pending"] == 1 and queue["oldest"][0]["what"] == "ETH"
    deadline = time.time() + 150
    positions: list[Any] = []
    restricted: list[Any] = []
    while time.time() < deadline and not (len(positions) >= 8 and restricted):
        time.sleep(3)
        positions = requests.get(f"{base}/predictions", timeout=10, headers=headers).json()["positions"]
        alerts = requests.get(f"{base}/alerts?limit=500", timeout=10, headers=headers).json()["alerts"]
        restricted = [a for a in alerts if "Project Falcon" in a["title"] and "Acme" in a["title"]]
    assert {p["venue"] for p in positions} == {"polymarket", "kalshi"} and len(positions) >= 8, positions
    assert restricted, "the Acme position raised no restricted-list alert"


def test_tests_cannot_reach_the_internet() -> None:
    """The autouse guard: only loopback sockets and names."""
    import pytest

    with pytest.raises(OSError), socket.create_connection(("93.184.216.34", 80), timeout=1):
        pass
    with pytest.raises(OSError):
        requests.get("https://api.binance.com/api/v3/time", timeout=2)
