"""The evaluation after a polling cycle judges the connections it synced together (one unit of work, the
statements shared: services/rules/after_sync.py). On a generated data set, on both databases, it must
raise exactly the alerts (rule, record, severity, title, detail, employee, connection), record the same
pre-clearance outcomes and unvalued records, move the same marks and count the same number of alerts as
evaluating each connection on its own, the way it was done before."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, insert, select

ASSETS = ("BTC", "ETH", "SOL", "DOGE", "LINK", "ARB")


def _populate(ta: Any, employees: int, seed: int = 5) -> tuple[list[int], dict[int, int]]:
    """Employees with an exchange account each, every other one a wallet or a prediction account too;
    a history of trades and transfers, balances and positions. Returns the connection ids and, per
    connection, the transaction id up to which it counts as evaluated (the rest is what a sync stored)."""
    from appliance.store.models import BalanceSnapshot, Connection, Employee, PredictionPosition, Transaction

    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(days=400)
    people, conns, snaps, positions = [], [], [], []
    ids = []
    for n in range(1, employees + 1):
        people.append({"id": 1000 + n, "name": f"Batch {n}", "email": f"batch{n}@example.test",
                       "department": ("Research", "Trading")[n % 2], "status": "active", "created_at": now})
        kinds = [("exchange", ("kraken", "binance", "okx")[n % 3], "")]
        if n % 2 == 0:
            kinds.append(("wallet", "ethereum", "0x" + f"{n:040x}") if n % 4 == 0 else
                         ("prediction", "polymarket", "0x" + f"{n + 10**6:040x}"))
        for k, (kind, venue, address) in enumerate(kinds):
            cid = 1000 + 10 * n + k
            ids.append(cid)
            conns.append({"id": cid, "employee_id": 1000 + n, "kind": kind, "venue": venue, "label": venue,
                          "status": "active", "status_reason": "", "address": address, "key_fingerprint": "",
                          "scope_verified": True, "consecutive_failures": 0, "created_at": now, "updated_at": now})
            for asset in rng.sample(ASSETS, 2):
                for m in range(2):
                    snaps.append({"connection_id": cid, "asset": asset, "account": "",
                                  "amount": Decimal(rng.randrange(0, 3) * 10**6), "valid_from": start +
                                  dt.timedelta(days=m * 200), "observed_until": now, "provenance": "api"})
            if kind == "prediction":
                for m in range(3):
                    positions.append({"connection_id": cid, "market_id": f"0xmarket{m}",
                                      "market_title": ("Acme Corp Q4 earnings beat?", "Fed cuts in December?",
                                                       "Globex merger approved?")[m],
                                      "category": "Business", "outcome": "Yes", "size": Decimal(rng.randrange(1, 9000)),
                                      "avg_price": Decimal("0.5") if m else None, "current_value": None,
                                      "valid_from": start + dt.timedelta(days=100 * m), "observed_until": now})
    txs = []
    for conn in conns:
        cid, kind = conn["id"], conn["kind"]
        times = sorted(start + dt.timedelta(seconds=rng.randrange(400 * 86400)) for _ in range(40))
        times += [now + dt.timedelta(seconds=m + 1) for m in range(3)]  # after the pre-clearance rule exists
        for m, when in enumerate(times):
            tx_kind = ("buy", "sell", "buy", "sell", "deposit", "withdrawal")[rng.randrange(6)]
            trade = tx_kind in ("buy", "sell")
            asset = ASSETS[rng.randrange(len(ASSETS))] if kind != "prediction" else f"market-{m % 3}:Yes"
            quote = ("USD", "USDT")[rng.randrange(2)] if trade else None
            amount = Decimal(rng.randrange(1, 10**5)) / 100
            raw: dict[str, Any] | None = None
            if not trade:
                other = "0x" + f"{rng.randrange(16**10):040x}" if rng.random() < 0.4 else conn["address"]
                raw = {"address": other} if tx_kind == "withdrawal" else {"from": other}
            if kind == "prediction":
                raw = {"title": ("Acme Corp Q4 earnings beat?", "Fed cuts in December?", "Globex merger?")[m % 3]}
            txs.append({"connection_id": cid, "stream": "trades" if trade else "transfers", "venue_tx_id": f"{cid}-{m}",
                        "kind": tx_kind, "occurred_at": when, "asset": asset, "amount": amount,
                        "market": f"{asset}/{quote}" if trade and kind != "prediction" else
                        (f"0xmarket{m % 3}" if kind == "prediction" else ""), "quote_asset": quote,
                        "quote_amount": amount * rng.randrange(1, 40000) if trade else None, "provenance": "api",
                        "orphaned": False, "raw": raw, "created_at": now})
    with ta.store.engine.begin() as conn:
        conn.execute(insert(Employee), people)
        conn.execute(insert(Connection), conns)
        conn.execute(insert(Transaction), txs)
        conn.execute(insert(BalanceSnapshot), snaps)
        conn.execute(insert(PredictionPosition), positions)
    with ta.store.read() as session:
        marks: dict[int, int] = {}
        for cid in ids:
            tx_ids = sorted(session.execute(select(Transaction.id).where(Transaction.connection_id == cid)).scalars())
            marks[cid] = tx_ids[rng.randrange(len(tx_ids) // 2, len(tx_ids) - 2)] if cid % 3 else 0
    return ids, marks


def _rules(ta: Any) -> None:
    from appliance.rbac.actors import system_actor
    from appliance.services.rules import catalogue, lists

    actor = system_actor("test")
    now = dt.datetime.now(dt.UTC)
    with ta.store.unit_of_work() as session:
        restricted = lists.create(session, actor, name="Restricted", kind="restricted", entries=[
            {"type": "asset", "value": "DOGE"}, {"type": "asset", "value": "SOL",
                                                  "effective_from": (now - dt.timedelta(days=120)).date().isoformat()},
            {"type": "venue", "value": "okx"}, {"type": "market_text", "value": "Acme"},
            {"type": "market_category", "value": "Business"}])
        watch = lists.create(session, actor, name="Watch", kind="watch", entries=[{"type": "asset", "value": "LINK"}])
        session.flush()
        catalogue.create(session, actor, name="Restricted", kind="restricted", params={"list_id": restricted.id})
        catalogue.create(session, actor, name="Watch", kind="watch", params={"list_id": watch.id})
        catalogue.create(session, actor, name="Hold", kind="holding_period", params={"days": 30})
        catalogue.create(session, actor, name="Blackout", kind="blackout", applies_to={"departments": ["Research"]},
                         params={"start": (now - dt.timedelta(days=200)).date().isoformat(),
                                 "end": (now - dt.timedelta(days=100)).date().isoformat()})
        catalogue.create(session, actor, name="Large", kind="threshold", params={
            "value": "20000000", "on": ["trade", "transfer", "position", "holding"]}, base_currency="USD")
        catalogue.create(session, actor, name="Undisclosed", kind="new_account", params={})
        catalogue.create(session, actor, name="Pre-clear", kind="preclearance_required", params={})


def _reset(ta: Any, marks: dict[int, int]) -> None:
    """Nothing evaluated: no alerts, outcomes or unvalued records; each connection's mark where it started."""
    from appliance.store.base import utcnow
    from appliance.store.models import (
        Alert,
        AlertEvent,
        AlertEvidence,
        EvaluationMark,
        PreclearanceMatch,
        UnvaluedRecord,
    )

    with ta.store.unit_of_work() as session:
        for model in (AlertEvidence, AlertEvent, Alert, PreclearanceMatch, UnvaluedRecord, EvaluationMark):
            session.execute(delete(model))
        rows = [{"connection_id": cid, "transaction_id": mark, "position_id": 0, "balance_id": 0,
                 "updated_at": utcnow()} for cid, mark in marks.items() if mark]
        if rows:
            session.execute(insert(EvaluationMark), rows)


def _state(ta: Any) -> dict[str, Any]:
    from appliance.store.models import Alert, EvaluationMark, PreclearanceMatch, UnvaluedRecord

    with ta.store.read() as session:
        alerts = sorted((a.rule_id, a.record_key, a.severity, a.kind, a.title, repr(sorted(a.detail.items())),
                         a.employee_id, a.connection_id) for a in session.execute(select(Alert)).scalars())
        matches = sorted((m.record_type, m.record_id, m.status, str(m.quantity), m.request_id)
                         for m in session.execute(select(PreclearanceMatch)).scalars())
        unvalued = sorted((u.rule_id, u.record_key, u.reason)
                          for u in session.execute(select(UnvaluedRecord)).scalars())
        marks = sorted((m.connection_id, m.transaction_id, m.position_id, m.balance_id)
                       for m in session.execute(select(EvaluationMark)).scalars())
    return {"alerts": alerts, "matches": matches, "unvalued": unvalued, "marks": marks}


def test_a_cycle_judged_together_raises_what_each_connection_judged_alone_raises(ta: Any) -> None:
    from appliance.services import conduct

    app = ta.appliance
    ids, marks = _populate(ta, 12)
    _rules(ta)

    _reset(ta, marks)
    alone: dict[int, int] = {}
    for cid in ids:
        alone[cid] = len(conduct.evaluate_connection(app, cid, stored=cid % 2 == 0).alert_ids)
    expected = _state(ta)
    assert len(expected["alerts"]) > 50 and expected["matches"] and expected["unvalued"]
    assert {a[0] for a in expected["alerts"]} and len({a[3] for a in expected["alerts"]}) == 2

    _reset(ta, marks)
    result, per_connection = conduct.evaluate_connections(app, ids, stored=[cid for cid in ids if cid % 2 == 0])
    assert _state(ta) == expected
    assert len(result.alert_ids) == len(expected["alerts"])
    # Each alert counted once, for the connection it names (alone, an alert about the employee's other account
    # was counted for whichever connection's evaluation found it).
    assert sum(per_connection.values()) == sum(alone.values()) == len(expected["alerts"])

    # Nothing new since: judged together again, nothing more (one alert per rule and record).
    again, counted = conduct.evaluate_connections(app, ids)
    assert again.alert_ids == [] and counted == {}
    assert _state(ta) == expected


def _history(ta: Any, workers: int) -> Any:
    from appliance.services.conduct import valuer
    from appliance.services.rules.evaluate import evaluate_history

    with ta.store.unit_of_work() as session:
        return evaluate_history(session, valuer(ta.appliance), workers=workers)


def test_a_history_judged_by_worker_processes_raises_what_one_process_raises(ta: Any, monkeypatch: Any) -> None:
    """The whole history read and judged by two worker processes, batch by batch (the batches made small here
    so that there are several), written by this process: the same alerts, unvalued records and counts as the
    serial path, and evaluated again nothing more."""
    from appliance.services.rules import evaluate

    _populate(ta, 12, seed=9)
    _rules(ta)
    monkeypatch.setattr(evaluate, "EMPLOYEE_BATCH", 5)
    _reset(ta, {})
    serial = _history(ta, 1)
    expected = _state(ta)
    assert len(expected["alerts"]) > 100 and expected["unvalued"]

    _reset(ta, {})
    parallel = _history(ta, 2)
    assert _state(ta) == expected
    assert parallel.summary() == serial.summary()
    assert len(parallel.critical_ids) == len(serial.critical_ids)

    again = _history(ta, 2)
    assert again.alert_ids == [] and _state(ta) == expected


def test_worker_processes_refused_by_a_sandbox_leave_the_evaluation_to_one_process(
        ta: Any, monkeypatch: Any, caplog: Any) -> None:
    """Where processes cannot be started (a service sandbox that refuses them, no shared memory for the pool's
    queues), nothing is written by the attempt and the history is judged in the calling process: the same
    alerts, and a warning that says why."""
    import multiprocessing

    from appliance.services.rules import evaluate, parallel

    _populate(ta, 12, seed=9)
    _rules(ta)
    monkeypatch.setattr(evaluate, "EMPLOYEE_BATCH", 5)
    _reset(ta, {})
    _history(ta, 1)
    expected = _state(ta)

    spawn = multiprocessing.get_context("spawn")

    class Refused(spawn.Process):  # type: ignore[name-defined,misc]
        def start(self) -> None:
            raise PermissionError(1, "Operation not permitted")

    class RefusingContext:
        Process = Refused

        def __getattr__(self, name: str) -> Any:
            return getattr(spawn, name)

    monkeypatch.setattr(parallel.multiprocessing, "get_context", lambda _method: RefusingContext())
    _reset(ta, {})
    with caplog.at_level("WARNING", logger="appliance.services.rules.evaluate"):
        _history(ta, 2)
    assert _state(ta) == expected
    assert any("worker processes could not be started (PermissionError" in r.getMessage() for r in caplog.records)
