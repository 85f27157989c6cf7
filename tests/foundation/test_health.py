"""/healthz reflects whether the store can be written, and a store that cannot be written answers every
request — sign-in too — with 503: SQLite on a real filesystem filled to the last byte (a size-limited
tmpfs), and at its max_page_count; PostgreSQL turned read-only (what a failed-over standby does)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from appliance.app import create_app
from tests.access.helpers import auth, token
from tests.support.app import TestAppliance as Built
from tests.support.app import build


@dataclass
class Unwritable:
    ta: Built
    fill: Callable[[], None]
    free: Callable[[], None]


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          check=False).returncode == 0


@pytest.fixture
def unwritable(db_url: str, tmp_path: Path, pg_cluster: Any) -> Iterator[Unwritable]:
    """An appliance whose store can be made unwritable (``fill``) and writable again (``free``)."""
    if db_url.startswith("sqlite"):
        disk = tmp_path / "disk"
        disk.mkdir()
        if not _mount_tmpfs(disk, "8m"):
            pytest.skip("cannot mount a size-limited tmpfs here (needs root); test_max_page_count covers SQLite")
        try:
            shutil.copyfile(db_url.removeprefix("sqlite:///"), disk / "vigatra.db")
            ta = build(f"sqlite:///{disk / 'vigatra.db'}", tmp_path / "data")
            filler = disk / "filler"

            def fill() -> None:
                # Unbuffered: a buffered file keeps the part of the last chunk that did not fit and fails again
                # on close, whenever the free space is not a multiple of the chunk.
                with open(filler, "wb", buffering=0) as handle:
                    try:
                        while True:
                            handle.write(b"\0" * 65536)
                            handle.flush()
                    except OSError:  # ENOSPC: the filesystem is full to the last block
                        pass

            yield Unwritable(ta, fill, filler.unlink)
            ta.appliance.close()
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)
        return
    ta = build(db_url, tmp_path / "data")
    database = ta.store.engine.url.database

    def read_only(on: bool) -> None:
        pg_cluster.run_sql(f'ALTER DATABASE "{database}" SET default_transaction_read_only = {"on" if on else "off"}')
        ta.store.engine.dispose()  # the setting applies to new sessions

    yield Unwritable(ta, lambda: read_only(True), lambda: read_only(False))
    ta.appliance.close()


def https_client(ta: Built) -> Any:
    from flask.testing import FlaskClient

    class HttpsClient(FlaskClient):
        def open(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("base_url", "https://localhost")
            return super().open(*args, **kwargs)

    app = create_app(ta.appliance)
    app.test_client_class = HttpsClient
    return app.test_client()


def health(client: Any) -> tuple[int, dict[str, Any]]:
    response = client.get("/healthz")
    return response.status_code, response.get_json()


def test_a_store_that_cannot_be_written_is_unavailable_to_health_checks_and_sign_in(unwritable: Unwritable) -> None:
    ta = unwritable.ta
    ta.appliance.audit.start()
    ta.appliance.write_probe.min_interval = 0  # every /healthz probes (normally at most one a second)
    ta.appliance.scheduler_state = lambda: "running"  # as `vigatra serve` sets it
    client = https_client(ta)
    alice = token(client, ta, "alice")
    assert health(client) == (200, {"status": "ok", "database": "ok", "scheduler": "running"})

    unwritable.fill()
    assert health(client) == (503, {"status": "unavailable", "database": "not_writable", "scheduler": "running"})
    for password in (ta.personas["carol"].password, "not carol's password"):
        refused = client.post("/api/v1/auth/token", json={"username": "carol", "password": password})
        assert refused.status_code == 503, refused.data[:300]
        assert refused.get_json()["error"]["code"] == "unavailable"
    client.get("/login")
    with client.session_transaction() as session:
        csrf = session["csrf"]
    page = client.post("/login", data={"username": "carol", "password": ta.personas["carol"].password,
                                       "csrf_token": csrf})
    assert page.status_code == 503
    assert client.get("/api/v1/employees", headers=auth(alice)).status_code == 503

    unwritable.free()
    assert health(client) == (200, {"status": "ok", "database": "ok", "scheduler": "running"})
    assert client.post("/api/v1/auth/token", json={"username": "carol", "password": ta.personas["carol"].password}
                       ).status_code == 200
    assert client.get("/api/v1/employees", headers=auth(alice)).status_code == 200


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_max_page_count(ta: Any) -> None:
    """SQLite at its page limit with no free page: writes that need a page fail, so the node is out."""
    ta.appliance.write_probe.min_interval = 0
    client = create_app(ta.appliance).test_client()
    assert health(client)[1]["database"] == "ok"

    def at_the_limit(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {pages}")
        cursor.close()

    ta.store.engine.dispose()
    event.listen(ta.store.engine, "connect", at_the_limit)
    assert health(client) == (503, {"status": "unavailable", "database": "not_writable", "scheduler": "stopped"})
    event.remove(ta.store.engine, "connect", at_the_limit)
    ta.store.engine.dispose()
    assert health(client) == (503, {"status": "degraded", "database": "ok", "scheduler": "stopped"})


def test_health_probes_are_cached_so_a_flood_costs_one_write(ta: Any) -> None:
    """/healthz needs no credentials: its probe result is reused for min_interval (a second by default)."""
    ta.appliance.write_probe.min_interval = 3600
    client = create_app(ta.appliance).test_client()
    writes: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE STORE_PROBES"):  # each probe (the first also inserts)
            writes.append(statement)

    event.listen(ta.store.engine, "before_cursor_execute", count)
    try:
        for _ in range(50):
            assert health(client)[1]["database"] == "ok"
    finally:
        event.remove(ta.store.engine, "before_cursor_execute", count)
    assert len(writes) == 1
