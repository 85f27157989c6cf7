"""Revocations and disables made in one process reach another process within a second (PostgreSQL
through LISTEN/NOTIFY, SQLite through the revision counter), and survive a restart."""

from __future__ import annotations

import re
import time
from pathlib import Path

import requests

from tests.support.proc import TLS, install, serve


def wait_for_status(url: str, headers: dict[str, str], status: int, limit: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if requests.get(url, headers={**headers, **TLS}, timeout=5).status_code == status:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{url} did not answer {status} within {limit}s")


def test_revocation_reaches_another_process_within_a_second(tmp_path: Path, empty_db_url: str) -> None:
    installed = install(tmp_path, empty_db_url)
    created = installed.run("apikey", "create", "--username", "admin", "--name", "siem")
    key = re.search(r"^api key: (\S+)$", created.stdout, re.M).group(1)  # type: ignore[union-attr]
    server = serve(installed)
    try:
        headers = {"Authorization": f"Bearer {key}"}
        employees = f"{server.url}/api/v1/employees"
        assert requests.get(employees, headers={**headers, **TLS}, timeout=5).status_code == 200
        # init's admin holds a one-time password, which buys no token: an admin with a chosen one does.
        installed.run("user", "create", "--username", "ops-admin", "--role", "Admin", "--password-stdin",
                      input="the operations administrator passphrase\n")
        token = requests.post(f"{server.url}/api/v1/auth/token", headers=TLS, timeout=10,
                              json={"username": "ops-admin", "password": "the operations administrator passphrase"}
                              ).json()["access_token"]
        installed.run("apikey", "revoke", "siem")
        assert wait_for_status(employees, headers, 401, 1.0) < 1.0
        jwt_headers = {"Authorization": f"Bearer {token}"}
        assert requests.get(employees, headers={**jwt_headers, **TLS}, timeout=5).status_code == 200
        installed.run("user", "disable", "ops-admin")
        assert wait_for_status(employees, jwt_headers, 401, 1.0) < 1.0
    finally:
        server.stop()
    restarted = serve(installed)
    try:
        employees = f"{restarted.url}/api/v1/employees"
        assert requests.get(employees, headers={"Authorization": f"Bearer {key}", **TLS}, timeout=5).status_code == 401
        assert requests.get(employees, headers={"Authorization": f"Bearer {token}", **TLS},
                            timeout=5).status_code == 401
    finally:
        restarted.stop()
