"""Fail closed: when the audit event cannot be written, the request fails with 503 and nothing is
served or changed. SQLite: a full volume (audit inserts fail with SQLITE_FULL). PostgreSQL: the
application's role loses INSERT on audit_events (the privilege model of `vigatra db grant-app-role`)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from appliance.app import create_app
from appliance.store.models import Employee
from tests.access.helpers import auth
from tests.support.app import build


def _block_audit_writes(ta: Any, db_url: str, pg_cluster: Any) -> None:
    if db_url.startswith("sqlite"):
        # A full volume, as SQLite reports it: every insert into the audit table fails with
        # "database or disk is full" (a per-connection TEMP trigger; the schema is untouched).
        def full(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("CREATE TEMP TRIGGER IF NOT EXISTS audit_full BEFORE INSERT ON main.audit_events "
                           "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END")
            cursor.close()

        ta.store.engine.dispose()
        event.listen(ta.store.engine, "connect", full)
        return
    database = ta.store.engine.url.database
    pg_cluster.run_sql(f"REVOKE INSERT ON audit_events FROM {ta.app_role}", database=database)


@pytest.fixture
def limited(db_url: str, tmp_path: Path, pg_cluster: Any) -> Any:
    """An appliance whose PostgreSQL connection uses an application role, not the owner."""
    if db_url.startswith("sqlite"):
        built = build(db_url, tmp_path / "data")
        built.app_role = None
        yield built
        built.appliance.close()
        return
    role = f"app_{secrets.token_hex(4)}"
    database = db_url.rsplit("/", 1)[1]
    pg_cluster.run_sql(f"CREATE ROLE {role} LOGIN")
    owner_built = build(db_url, tmp_path / "owner")
    owner_built.appliance.close()
    pg_cluster.run_sql(f'GRANT CONNECT ON DATABASE "{database}" TO {role}')
    pg_cluster.run_sql(f"GRANT USAGE ON SCHEMA public TO {role}", database=database)
    pg_cluster.run_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
                       database=database)
    pg_cluster.run_sql(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}", database=database)
    pg_cluster.run_sql(f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints FROM {role}",
                       database=database)
    from appliance.services.context import Appliance
    from appliance.store.session import Store, make_engine

    app_url = db_url.replace("postgresql+psycopg://vigatra@", f"postgresql+psycopg://{role}@")
    appliance = Appliance(owner_built.settings, store=Store(make_engine(app_url)),
                          provider=owner_built.appliance.keys.provider)
    appliance.open()
    owner_built.appliance = appliance
    owner_built.app_role = role
    yield owner_built
    appliance.close()


def count_employees(ta: Any) -> int:
    with ta.store.read() as session:
        return int(session.execute(select(func.count()).select_from(Employee)).scalar_one())


def test_reads_and_changes_fail_closed(limited: Any, db_url: str, pg_cluster: Any) -> None:
    client = create_app(limited.appliance).test_client()
    headers = auth(token_over_https(client, limited, "alice"))
    created = client.post("/api/v1/employees", json={"name": "Visible Before", "email": "before@example.com"},
                          headers=headers, base_url="https://localhost")
    assert created.status_code == 201
    _block_audit_writes(limited, db_url, pg_cluster)
    read = client.get("/api/v1/employees", headers=headers, base_url="https://localhost")
    assert read.status_code == 503
    assert b"Visible Before" not in read.data
    assert read.get_json()["error"]["code"] == "unavailable"
    change = client.post("/api/v1/employees", json={"name": "Never Stored", "email": "never@example.com"},
                         headers=headers, base_url="https://localhost")
    assert change.status_code == 503
    assert count_employees(limited) == 1
    page = client.get("/employees", headers=headers, base_url="https://localhost")
    assert page.status_code == 503
    assert b"Visible Before" not in page.data


def test_a_refused_browser_request_keeps_none_of_its_session_changes(limited: Any, db_url: str,
                                                                    pg_cluster: Any) -> None:
    """Sign-out clears the session and revokes it; with the audit trail down it answers 503, its revocation
    is rolled back, and the browser's cookie is not touched either (no Set-Cookie on the refusal)."""
    client = create_app(limited.appliance).test_client()
    client.get("/login", base_url="https://localhost")
    with client.session_transaction(base_url="https://localhost") as session:
        csrf = session["csrf"]
    signed_in = client.post("/login", base_url="https://localhost", data={
        "username": "alice", "password": limited.personas["alice"].password, "csrf_token": csrf})
    assert signed_in.status_code == 302
    with client.session_transaction(base_url="https://localhost") as session:
        sid, csrf = session["sid"], session["csrf"]
    _block_audit_writes(limited, db_url, pg_cluster)
    refused = client.post("/logout", data={"csrf_token": csrf}, base_url="https://localhost")
    assert refused.status_code == 503
    assert "Set-Cookie" not in refused.headers
    with client.session_transaction(base_url="https://localhost") as session:
        assert session["sid"] == sid
    assert not limited.appliance.auth.session_revoked(sid)


def token_over_https(client: Any, ta: Any, name: str) -> str:
    response = client.post("/api/v1/auth/token", json={"username": name, "password": ta.personas[name].password},
                           base_url="https://localhost")
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["access_token"])


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_application_role_cannot_alter_audit_rows(limited: Any, pg_cluster: Any) -> None:
    """Even with the append-only triggers gone, the application's role lacks UPDATE and DELETE."""
    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    client = create_app(limited.appliance).test_client()
    token_over_https(client, limited, "alice")  # writes audit events
    database = limited.store.engine.url.database
    pg_cluster.run_sql("ALTER TABLE audit_events DISABLE TRIGGER USER", database=database)
    for statement in ("UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(ProgrammingError, match="permission denied"), limited.store.engine.begin() as conn:
            conn.execute(text(statement))


def test_group_commit_shares_commits(ta: Any) -> None:
    """Concurrent reads share audit commits: fewer transactions than events."""
    import threading

    from appliance.app import create_app as make

    ta.appliance.audit.start()
    try:
        app = make(ta.appliance)
        tokens = [token_over_https(app.test_client(), ta, "alice")]

        def hammer() -> None:
            client = app.test_client()
            for _ in range(25):
                assert client.get("/api/v1/employees", headers=auth(tokens[0]),
                                  base_url="https://localhost").status_code == 200

        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        committer = ta.appliance.audit
        assert committer.events >= 200
        assert committer.batches < committer.events
    finally:
        ta.appliance.audit.stop()


