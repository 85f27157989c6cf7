"""Test harness shared by the whole suite.

- Every test runs with outbound sockets limited to loopback (an autouse guard).
- ``store`` gives a fresh, migrated database, parametrised over SQLite and a real PostgreSQL
  cluster that the session starts with the machine's initdb/pg_ctl (or VIGATRA_TEST_POSTGRES_URL).
- ``sim`` runs the venue simulators on a loopback port for the whole session.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.pg import PostgresCluster, start_cluster
from tests.support.sim import RunningSim, start_sim

# --------------------------------------------------------------------------------------------
# Outbound sockets: loopback only.

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _is_loopback(host: Any) -> bool:
    if host in (None, "localhost", "localhost.localdomain", ""):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise ConnectionRefusedError(f"tests may only connect to loopback, not {address[0]!r}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _is_loopback(host if not isinstance(host, bytes) else host.decode()):
        raise socket.gaierror(socket.EAI_NONAME, f"tests may not resolve {host!r} (loopback only)")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)


# --------------------------------------------------------------------------------------------
# Databases.


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster | None]:
    cluster, why = start_cluster(tmp_path_factory.mktemp("pg"))
    if cluster is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL tests cannot run in CI: {why}", pytrace=False)
        yield None
        return
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from appliance.store.migrate import upgrade
    from appliance.store.session import make_engine

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a fresh database migrated to head, on each backend in turn."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        target = tmp_path / "vigatra.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    cluster: PostgresCluster | None = request.getfixturevalue("pg_cluster")
    if cluster is None:
        pytest.skip("no PostgreSQL available (set VIGATRA_TEST_POSTGRES_URL or install postgresql)")
    return cluster.fresh_database(migrated=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database (no schema), on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    cluster: PostgresCluster | None = request.getfixturevalue("pg_cluster")
    if cluster is None:
        pytest.skip("no PostgreSQL available")
    return cluster.fresh_database(migrated=False)


@pytest.fixture
def store(db_url: str) -> Iterator[Any]:
    from appliance.store.session import Store, make_engine

    s = Store(make_engine(db_url))
    try:
        yield s
    finally:
        s.dispose()


# --------------------------------------------------------------------------------------------
# Venue simulators.


@pytest.fixture(scope="session")
def sim() -> Iterator[RunningSim]:
    running = start_sim()
    try:
        yield running
    finally:
        running.stop()


# --------------------------------------------------------------------------------------------
# The appliance with personas, and a Flask test client that speaks HTTPS from loopback.


@pytest.fixture
def ta(db_url: str, tmp_path: Path) -> Iterator[Any]:
    from tests.support.app import build

    built = build(db_url, tmp_path / "data")
    try:
        yield built
    finally:
        built.appliance.close()


@pytest.fixture
def flask_app(ta: Any) -> Any:
    from appliance.app import create_app

    return create_app(ta.appliance)


@pytest.fixture
def client(flask_app: Any) -> Any:
    from flask.testing import FlaskClient

    class HttpsClient(FlaskClient):
        """Requests arrive over TLS from 127.0.0.1 unless a test says otherwise."""

        def open(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("base_url", "https://localhost")
            return super().open(*args, **kwargs)

    flask_app.test_client_class = HttpsClient
    return flask_app.test_client()
