"""The bulk paths of the rules evaluation (issue 19's performance work), on both databases: alerts inserted
many at a time report exactly the ones they created (the unique (rule, record) key decides), and the
garbage collector paused during a full evaluation is running again afterwards."""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest
from sqlalchemy import func, select


def _rule_and_employee(ta: Any) -> tuple[int, int]:
    from appliance.rbac.actors import system_actor
    from appliance.services import employees
    from appliance.services.rules import catalogue

    with ta.store.unit_of_work() as session:
        person = employees.create(session, name="Bulk Person", email="bulk@example.test", department="Research")
        rule = catalogue.create(session, system_actor("test"), name="Undisclosed", kind="new_account", params={})
        session.flush()
        return int(rule.id), int(person.id)


def _row(rule_id: int, employee_id: int, key: str) -> dict[str, Any]:
    from appliance.store.base import utcnow

    now = utcnow()
    return {"employee_id": employee_id, "connection_id": None, "kind": "rule_breach", "severity": "info",
            "status": "open", "title": f"finding {key}", "detail": {"records": []}, "rule_id": rule_id,
            "rule_version": 1, "list_entry_id": None, "record_key": key, "occurred_at": now, "created_at": now,
            "updated_at": now, "resolution": "", "reason": ""}


def test_bulk_insert_reports_only_the_alerts_it_created(ta: Any) -> None:
    from appliance.services.rules import storing
    from appliance.store.models import Alert

    rule_id, employee_id = _rule_and_employee(ta)
    with ta.store.unit_of_work() as session:
        first = storing.insert_alerts(session, [_row(rule_id, employee_id, f"tx:{n}") for n in range(5)])
    assert len(first) == 5 and len({i for i, _s, _r in first}) == 5
    with ta.store.unit_of_work() as session:
        # Three already exist: only the four new ones are created and reported.
        again = storing.insert_alerts(session, [_row(rule_id, employee_id, f"tx:{n}") for n in range(2, 9)])
        one = storing.insert_alerts(session, [_row(rule_id, employee_id, "tx:8")])
    assert len(again) == 4 and one == []
    assert {i for i, _s, _r in again}.isdisjoint({i for i, _s, _r in first})
    assert all(severity == "info" and rule == rule_id for _i, severity, rule in again)
    with ta.store.read() as session:
        keys = sorted(session.execute(select(Alert.record_key).where(Alert.rule_id == rule_id)).scalars())
        assert keys == sorted(f"tx:{n}" for n in range(9))
        created = {i for i, _s, _r in first + again}
        assert set(session.execute(select(Alert.id).where(Alert.rule_id == rule_id)).scalars()) == created
        assert session.execute(select(func.count()).select_from(Alert)).scalar_one() >= 9


def test_prepared_rows_skip_existing_keys(ta: Any) -> None:
    """Rows prepared for the driver (a whole-history evaluation's path: COPY on PostgreSQL, straight into the
    table when no key exists, through a temporary table when one does) report exactly what they created."""
    from appliance.services.rules import storing
    from appliance.store.models import Alert

    rule_id, employee_id = _rule_and_employee(ta)

    def prepared(session: Any, keys: range) -> list[tuple[Any, ...]]:
        return storing.prepared(session.get_bind().dialect, Alert, storing.ALERT_COLUMNS,
                                [_row(rule_id, employee_id, f"tx:{n}") for n in keys])

    with ta.store.unit_of_work() as session:
        first = storing.insert_prepared_alerts(session, prepared(session, range(4)))
    with ta.store.unit_of_work() as session:
        again = storing.insert_prepared_alerts(session, prepared(session, range(2, 7)))  # 2 and 3 exist
        # The unit of work goes on after a skipped key: a later insert in it works.
        later = storing.insert_prepared_alerts(session, prepared(session, range(7, 9)))
    assert len(first) == 4 and len(again) == 3 and len(later) == 2
    assert all(severity == "info" and rule == rule_id for _i, severity, rule in first + again + later)
    with ta.store.read() as session:
        stored = {int(i): str(k) for i, k in session.execute(
            select(Alert.id, Alert.record_key).where(Alert.rule_id == rule_id))}
    assert sorted(stored.values()) == sorted(f"tx:{n}" for n in range(9))
    assert set(stored) == {i for i, _s, _r in first + again + later}


@pytest.mark.parametrize("probes", [2000, 0], ids=["by-key", "by-employee"])
def test_unvalued_records_recorded_once_settled_and_opened_again(ta: Any, monkeypatch: Any, probes: int) -> None:
    """Compared with what is recorded key by key (a few keys) or by reading the employees' rows (many)."""
    from appliance.services.rules import unvalued
    from appliance.services.rules.judge import Unvalued
    from appliance.store.models import UnvaluedRecord

    monkeypatch.setattr(unvalued, "KEY_PROBES", probes)
    rule_id, employee_id = _rule_and_employee(ta)

    def missing(*keys: str) -> list[Unvalued]:
        return [Unvalued(rule_id, employee_id, key, "no price") for key in keys]

    def state() -> dict[str, bool]:
        with ta.store.read() as session:
            return {k: v is not None for k, v in session.execute(
                select(UnvaluedRecord.record_key, UnvaluedRecord.valued_at).where(UnvaluedRecord.rule_id == rule_id))}

    with ta.store.unit_of_work() as session:
        assert not unvalued.any_recorded(session)
        found = unvalued.sort_out(session, missing("tx:1", "tx:2"), [(rule_id, "tx:3")], compare=False)
        assert [row[1] for row in found.new] == ["tx:1", "tx:2"] and not found.settled
        unvalued.write(session, found)
    assert state() == {"tx:1": False, "tx:2": False}
    with ta.store.unit_of_work() as session:
        assert unvalued.any_recorded(session)
        # tx:1 valued now (settled), tx:2 still not (nothing changes), tx:4 new.
        found = unvalued.sort_out(session, missing("tx:2", "tx:4"), [(rule_id, "tx:1")], compare=True,
                                  employee_ids=[employee_id])
        assert found.new == [(rule_id, "tx:4", employee_id, "no price")] and found.settled == [(rule_id, "tx:1")]
        assert found.reopened == [] and found.found == 2
        unvalued.write(session, found)
    assert state() == {"tx:1": True, "tx:2": False, "tx:4": False}
    with ta.store.unit_of_work() as session:
        # tx:1 cannot be valued any more: open again. A key recorded meanwhile is skipped by the insert.
        found = unvalued.sort_out(session, missing("tx:1"), [], compare=True, employee_ids=[employee_id])
        assert found.reopened == [(rule_id, "tx:1")] and not found.new
        found.new = [(rule_id, key, employee_id, "no price") for key in ("tx:2", "tx:5")]
        unvalued.write(session, found)
    assert state() == {"tx:1": False, "tx:2": False, "tx:4": False, "tx:5": False}


def test_collector_paused_only_while_evaluations_run() -> None:
    from appliance.services.rules.collector import collector_paused

    assert gc.isenabled()
    inside = threading.Event()
    leave = threading.Event()

    def other() -> None:
        with collector_paused():
            inside.set()
            leave.wait(5)

    worker = threading.Thread(target=other)
    with collector_paused():
        assert not gc.isenabled()
        worker.start()
        inside.wait(5)
    assert not gc.isenabled()  # the other evaluation still runs
    leave.set()
    worker.join(5)
    assert gc.isenabled()
