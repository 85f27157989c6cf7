"""A holdings task lists what the holdings report reconstructs for its day (services/filings/holdings.py: one
definition of "holdings as of a day"), valued at that day's price: an account whose only balance was read after
the as-of day still shows the holding, rolled back over the transactions in between, in the task and in the
frozen snapshot."""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal
from typing import Any

from appliance.services.valuation.imports import import_prices
from appliance.store.base import utcnow
from appliance.store.models import AttestationSubmission, BalanceSnapshot, Connection, Transaction
from tests.attestations.helpers import Dashboard, access_person, portal_get, portal_post, task_of
from tests.portal.conftest import signed_in


def test_a_balance_read_after_the_as_of_day_is_rolled_back_and_valued_at_that_days_price(
        client: Any, ta: Any, flask_app: Any) -> None:
    now = utcnow().replace(microsecond=0)
    day = (now - dt.timedelta(days=20)).date()
    alice = Dashboard(client, ta, "alice")
    ada_id = access_person(alice, "Ada Lovelace", since=day.isoformat())
    with ta.store.unit_of_work() as session:
        connection = Connection(employee_id=ada_id, kind="exchange", venue="kraken", label="kraken main",
                                status="active", key_fingerprint=secrets.token_hex(8))
        session.add(connection)
        session.flush()
        # The account's only reading is today's: 1.5 ADAX, of which 0.5 were bought after the as-of day.
        session.add_all([
            BalanceSnapshot(connection_id=connection.id, asset="ADAX", amount=Decimal("1.5"), valid_from=now,
                            observed_until=now),
            Transaction(connection_id=connection.id, stream="trades", venue_tx_id=secrets.token_hex(6), kind="buy",
                        occurred_at=dt.datetime.combine(day + dt.timedelta(days=5), dt.time(9), tzinfo=dt.UTC),
                        asset="ADAX", amount=Decimal("0.5"), status="completed")])
        # The price on the as-of day, and a much later one the task must not use.
        noon = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
        import_prices(session, (f"asset,currency,time,price,source\nADAX,USD,{noon:%Y-%m-%dT%H:%M:%SZ},100,fix\n"
                                f"ADAX,USD,{now - dt.timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ},200,fix\n").encode(),
                      now=now)
        connection_id = connection.id
    campaign = next(c for c in alice.get("/campaigns")["campaigns"] if c["kind"] == "initial_holdings")
    task_id = task_of(alice.get(f"/campaigns/{campaign['id']}"), ada_id)["id"]

    ada = signed_in(flask_app, ta, ada_id)
    content = portal_get(ada, f"/tasks/{task_id}")["content"]
    assert len(content["records"]) == 1, content["records"]
    record = content["records"][0]
    assert record["record"] == f"holding:{connection_id}:ADAX:"
    assert record["asset"] == "ADAX" and Decimal(record["quantity"]) == Decimal("1.0")
    assert record["basis"] == "rolled back" and record["transactions_applied"] == 1
    assert record["date"] == day.isoformat() and record["connection_id"] == connection_id
    assert Decimal(record["price"]) == 100 and Decimal(record["principal"]) == 100, record
    assert record["priced_at"] is not None and record["priced_at"] < (day + dt.timedelta(days=1)).isoformat()
    # The page shows it too.
    assert f'data-record="holding:{connection_id}:ADAX:"' in ada.get(f"/me/tasks/{task_id}").get_data(as_text=True)

    certified = portal_post(ada, f"/tasks/{task_id}/certify", {"typed_name": "Ada Lovelace"})
    with ta.store.read() as session:
        row = session.get(AttestationSubmission, certified["submission_id"])
        assert row is not None
        frozen = row.snapshot
    assert frozen["basis"] == "holdings" and frozen["as_of"] == day.isoformat()
    assert frozen["records"] == content["records"]
    assert "rolled back" in frozen["holdings_method"]
