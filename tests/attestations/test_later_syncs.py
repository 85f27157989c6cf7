"""A certified snapshot stays as certified when a later sync (real ccxt against the simulator) brings a trade
of the certified quarter; the difference raises an alert naming the report, once."""

from __future__ import annotations

import copy
import datetime as dt
import time
from typing import Any

from sqlalchemy import select

from appliance.services.attestations import campaigns, certify
from appliance.services.attestations.snapshot import digest
from appliance.services.sync import run_cycle
from appliance.store.models import Alert, AttestationDifference, AttestationSubmission, Connection, Employee
from tests.attestations.test_certification import current_quarter
from tests.support.sim import RunningSim
from tests.sync.conftest import onboard


def test_the_snapshot_is_frozen_and_a_later_trade_in_the_period_raises_one_alert(sta: Any, sim: RunningSim) -> None:
    connection_id, key = onboard(sta, sim, "kraken", history={"trades": 0, "deposits": 0, "withdrawals": 0})
    now_ms = int(time.time() * 1000)
    sim.control("POST", f"kraken/keys/{key['api_key']}/trades", {"trades": [
        {"base": "BTC", "quote": "USD", "side": "buy", "amount": "0.5", "price": "60000", "fee": "1",
         "fee_asset": "USD", "timestamp": now_ms - 3_600_000}]})
    assert run_cycle(sta.appliance).outcomes[0].ok
    with sta.store.unit_of_work() as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None
        employee = session.get(Employee, connection.employee_id)
        assert employee is not None
        campaigns.set_access_person(session, sta.settings, employee, True)
        campaign = campaigns.create(session, sta.settings, None, kind="quarterly_transactions",
                                    period=current_quarter())
        task_id = next(t.id for t, e in campaigns.tasks_of(session, campaign.id) if e.id == employee.id)
        submission = certify.submit(session, sta.appliance, employee.id, task_id, typed_name=employee.name)
        submission_id, employee_id = submission.id, employee.id
    with sta.store.read() as session:
        row = session.get(AttestationSubmission, submission_id)
        assert row is not None
        frozen, frozen_sha = copy.deepcopy(row.snapshot), row.snapshot_sha256
    assert len(frozen["records"]) == 1 and frozen["records"][0]["asset"] == "BTC"

    # A later trade of the same quarter reaches the venue; the next sync stores it.
    sim.control("POST", f"kraken/keys/{key['api_key']}/trades", {"trades": [
        {"base": "ETH", "quote": "USD", "side": "sell", "amount": "2", "price": "3000", "fee": "1",
         "fee_asset": "USD", "timestamp": now_ms - 600_000}]})
    outcome = run_cycle(sta.appliance, only=connection_id, force=True).outcomes[0]
    assert outcome.ok and outcome.records >= 1
    with sta.store.read() as session:
        row = session.get(AttestationSubmission, submission_id)
        assert row is not None
        assert row.snapshot == frozen and row.snapshot_sha256 == frozen_sha == digest(row.snapshot)
        differences = list(session.execute(select(AttestationDifference).where(
            AttestationDifference.submission_id == submission_id)).scalars())
        assert len(differences) == 1
        alert = session.get(Alert, differences[0].alert_id)
        assert alert is not None and alert.kind == "attestation_difference" and alert.employee_id == employee_id
        assert alert.status == "open" and "Records found after certification" in alert.title
        assert alert.detail is not None and alert.detail["submission_id"] == submission_id
    # A later trade outside the quarter is no difference; the one already found is not raised again.
    sim.control("POST", f"kraken/keys/{key['api_key']}/trades", {"trades": [
        {"base": "BTC", "quote": "USD", "side": "sell", "amount": "0.1", "price": "61000", "fee": "1",
         "fee_asset": "USD", "timestamp": int((dt.datetime(2001, 1, 2, tzinfo=dt.UTC)).timestamp() * 1000)}]})
    assert run_cycle(sta.appliance, only=connection_id, force=True).outcomes[0].ok
    with sta.store.read() as session:
        kinds = [a.kind for a in session.execute(select(Alert).where(Alert.employee_id == employee_id)).scalars()]
        assert kinds.count("attestation_difference") == 1
