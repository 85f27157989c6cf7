"""The store's sessions and pool (both databases): a write session takes SQLite's write lock when it
starts; a reader runs its statements without a transaction and refuses to write; the pool holds a
connection for every concurrent user, so requests never open connections."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from appliance.settings import settings_from_mapping
from appliance.store.models import Employee
from appliance.store.session import BACKGROUND_CONNECTIONS, Store, pool_size
from tests.access.helpers import auth, token


@pytest.fixture
def statements(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.strip().split()[0].upper() + (" IMMEDIATE" if "IMMEDIATE" in statement else ""))

    event.listen(store.engine, "before_cursor_execute", note)
    yield seen
    event.remove(store.engine, "before_cursor_execute", note)


def test_a_write_session_takes_the_write_lock_when_it_starts(store: Store, statements: list[str]) -> None:
    with store.unit_of_work() as session:
        session.execute(select(func.count()).select_from(Employee))
    if store.dialect == "sqlite":
        assert statements[:2] == ["BEGIN IMMEDIATE", "SELECT"]
    else:
        assert "SELECT" in statements


def test_a_reader_runs_statements_without_a_transaction(store: Store, statements: list[str]) -> None:
    session = store.reader()
    try:
        session.execute(text("SELECT 1"))
        session.execute(select(func.count()).select_from(Employee))
        if store.dialect == "postgresql":
            assert session.connection().get_execution_options()["isolation_level"] == "AUTOCOMMIT"
    finally:
        session.close()
    assert statements == ["SELECT", "SELECT"]  # no BEGIN, and nothing to roll back


def test_a_reader_refuses_to_write(store: Store) -> None:
    session = store.reader()
    try:
        session.add(Employee(name="Reader Write", email="reader@example.com", department="", status="active"))
        with pytest.raises(RuntimeError, match="must not change anything"):
            session.flush()
    finally:
        session.close()
    with store.read() as check:
        assert check.execute(select(func.count()).select_from(Employee)).scalar_one() == 0


def test_the_pool_holds_a_connection_for_every_concurrent_user() -> None:
    auto = settings_from_mapping({"data_dir": "/nonexistent", "server": {"threads": 24}, "poller": {"workers": 6}},
                                 env={})
    assert pool_size(auto) == 24 + 6 + BACKGROUND_CONNECTIONS
    explicit = settings_from_mapping({"data_dir": "/nonexistent", "database": {"pool_size": 7}}, env={})
    assert pool_size(explicit) == 7


def test_concurrent_requests_reuse_pooled_connections(ta: Any, flask_app: Any, client: Any) -> None:
    engine = ta.store.engine
    bearer = auth(token(client, ta, "carol"))
    assert client.get("/api/v1/employees", headers=bearer).status_code == 200
    opened: list[int] = []
    event.listen(engine, "connect", lambda *_args: opened.append(1))
    answers: list[int] = []

    def requests(count: int) -> None:
        own = flask_app.test_client()  # a client per thread, as each connection of a server would be
        for _ in range(count):
            answers.append(own.get("/api/v1/employees", headers=bearer, base_url="https://localhost").status_code)

    threads = [threading.Thread(target=requests, args=(25,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 200
    assert len(opened) <= 8  # at most one per concurrent request thread, never one per request
