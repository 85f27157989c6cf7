"""No client's input can fail another client's request: the group committer writes the audit records of
concurrent requests in one transaction, and one record the database refused (a NUL in a path on
PostgreSQL, a lone surrogate on both) used to fail the whole batch — with two attacking threads, 75 % of
four normal clients' requests answered 503, and the attacker's own requests left no record.

Every record is storable from the moment it is made (NUL and lone surrogates escaped, over-long fields
cut with a marker); a batch the database still refuses is written record by record, so only the bad
record's request fails, and its safest form is stored in its place."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from appliance.app import create_app
from appliance.audit.checkpoints import Signer
from appliance.audit.verify import verify_database
from appliance.audit.writer import AuditRecord, GroupCommitter
from appliance.errors import Unavailable
from appliance.store.models import AuditChainHead, AuditEvent
from appliance.store.session import Store
from tests.access.helpers import auth, token


def test_storable_escapes_and_cuts_with_a_marker() -> None:
    from appliance.audit.writer import storable

    assert storable("plain") == "plain"
    assert storable("/api/v1/x\x00y") == "/api/v1/x\\x00y"
    assert storable("caf\u00e9 \udc80!") == "caf\u00e9 \\udc80!"
    assert storable("x" * 600, 500) == "x" * 499 + "…"
    record = AuditRecord("employees.read", path="/a\x00" + "b" * 600, user_agent="\ud800agent",
                         resource_id=12345678901234567890, detail='{"q": "\udfff"}')  # type: ignore[arg-type]
    assert record.path == ("/a\\x00" + "b" * 600)[:499] + "…"
    assert record.user_agent == "\\ud800agent"
    assert record.resource_id == "12345678901234567890"
    assert record.detail == '{"q": "\\udfff"}'


def chain_verifies(store: Store) -> None:
    """Every event's hash and link (raises VerifyFailed); these databases hold no checkpoint to check."""
    verify_database(store, appliance_id="test", public_key_pem=Signer.from_seed(bytes(32)).public_pem)


def stored(store: Store, event_id: int) -> AuditEvent:
    with store.read() as session:
        row = session.get(AuditEvent, event_id)
        assert row is not None
        session.expunge(row)
        return row


def in_one_batch(store: Store, records: list[AuditRecord]) -> list[int | BaseException]:
    """Write ``records`` through a running group committer, all in one batch: a first record holds the
    writer on a lock of the chain head (another transaction holds it) while the others queue; then the
    lock goes and the writer takes the queued ones together."""
    committer = GroupCommitter(store, timeout=60)
    committer.start()
    results: list[int | BaseException] = [0] * len(records)

    def write(index: int) -> None:
        try:
            results[index] = committer.record(records[index])
        except Exception as exc:
            results[index] = exc

    blocker = store.session(write=True)  # SQLite: BEGIN IMMEDIATE takes the write lock
    try:
        with blocker:
            blocker.execute(select(AuditChainHead.last_id).where(AuditChainHead.id == 1).with_for_update())
            first = threading.Thread(target=committer.record, args=(AuditRecord("test.first"),))
            first.start()
            while committer._queue.qsize():  # the writer has taken the first record and waits on the lock
                threading.Event().wait(0.01)
            threads = [threading.Thread(target=write, args=(i,)) for i in range(len(records))]
            for thread in threads:
                thread.start()
            while committer._queue.qsize() < len(records):
                threading.Event().wait(0.01)
            blocker.rollback()
        first.join()
        for thread in threads:
            thread.join()
    finally:
        committer.stop()
    return results


def test_a_batch_with_nul_surrogates_and_over_long_fields_is_stored_whole(store: Store) -> None:
    records = [AuditRecord("employees.read", path="/api/v1/employees", request_id=f"normal-{i}") for i in range(4)]
    records += [AuditRecord("route.unknown", path="/api/v1/anything\x00", request_id="nul"),
                AuditRecord("route.unknown", path="/api/v1/\udc80", request_id="surrogate"),
                AuditRecord("route.unknown", path="/" + "p" * 2000, user_agent="u" * 1000, request_id="long")]
    results = in_one_batch(store, records)
    assert all(isinstance(r, int) for r in results), results
    ids = {r.request_id: int(result) for r, result in zip(records, results, strict=True)
           if isinstance(result, int)}
    assert stored(store, ids["nul"]).path == "/api/v1/anything\\x00"
    assert stored(store, ids["surrogate"]).path == "/api/v1/\\udc80"
    long = stored(store, ids["long"])
    assert len(long.path) == 500 and long.path.endswith("…") and long.user_agent.endswith("…")
    chain_verifies(store)


def test_a_record_the_database_refuses_fails_alone_and_its_safest_form_is_stored(store: Store) -> None:
    records = [AuditRecord("employees.read", request_id=f"normal-{i}", status=200) for i in range(5)]
    # A value no sanitising of text can fix: a status beyond the column's integer range.
    records.insert(2, AuditRecord("route.unknown", request_id="bad", status=2**70, path="/x\x00"))
    results = in_one_batch(store, records)
    for record, result in zip(records, results, strict=True):
        if record.request_id == "bad":
            assert isinstance(result, Unavailable), result
        else:
            assert isinstance(result, int), (record.request_id, result)
    with store.read() as session:
        safest = session.execute(select(AuditEvent).where(AuditEvent.request_id == "bad")).scalar_one()
        assert safest.status is None and safest.path == "/x\\x00"
        assert '"unstorable": true' in safest.detail
    chain_verifies(store)


def _hammer(client: Any, path: str, headers: dict[str, str], rounds: int, codes: list[int]) -> Callable[[], None]:
    def run() -> None:
        for _ in range(rounds):
            codes.append(client.get(path, headers=headers, base_url="https://localhost").status_code)
    return run


def test_attackers_sending_nul_paths_never_fail_other_clients_requests(ta: Any) -> None:
    """The issue's run: two threads send /api/v1/anything%00 as a user with no role while four normal
    clients read; every normal request answers 200 and every attacking one 404, each with its record."""
    ta.appliance.audit.start()
    app = create_app(ta.appliance)
    client = app.test_client()
    normal = auth(token(app.test_client(), ta, "alice"))
    attacker = auth(token(app.test_client(), ta, "nora"))
    normal_codes: list[int] = []
    attack_codes: list[int] = []
    threads = [threading.Thread(target=_hammer(client, "/api/v1/employees", normal, 25, normal_codes))
               for _ in range(4)]
    threads += [threading.Thread(target=_hammer(client, "/api/v1/anything%00", attacker, 25, attack_codes))
                for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert normal_codes == [200] * 100
    assert attack_codes == [404] * 50
    with ta.store.read() as session:
        paths = list(session.execute(select(AuditEvent.path).where(AuditEvent.user_id == ta.personas["nora"].user_id,
                                                                   AuditEvent.status == 404)).scalars())
    assert paths == ["/api/v1/anything\\x00"] * 50
    chain_verifies(ta.store)
