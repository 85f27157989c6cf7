"""Post-trade matching against the simulators: an employee onboarded through the real path (ccxt,
signatures verified), approvals decided through the API, trades made at the venue, synced by the real
engine; the outcome on each trade, and the preclearance_required rule's alerts with the request as
evidence."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update

from appliance.store.models import AlertEvidence, PreclearanceRequest
from tests.conduct.conftest import QUIET, Api, add_trades, employee_of, sync
from tests.support.sim import RunningSim
from tests.sync import conftest as sync_fixtures
from tests.sync.conftest import https_client, onboard

sta_factory = sync_fixtures.sta_factory


@pytest.fixture
def sta(sta_factory: Any) -> Any:
    return sta_factory()


@pytest.fixture
def carol(sta: Any) -> Api:
    return Api(https_client(sta), sta, "carol")


def approve(carol: Api, employee_id: int, asset: str, side: str, quantity: str) -> dict[str, Any]:
    made = carol.post("/preclearances", {"employee_id": employee_id, "asset": asset, "side": side,
                                         "quantity": quantity})
    assert made["status"] == "pending"
    decided = carol.post(f"/preclearances/{made['id']}/decision", {"approve": True, "comment": "ok"}, 200)
    assert decided["status"] == "approved"
    return decided


def trade(sim: RunningSim, key: dict[str, Any], base: str, side: str, amount: str,
          when: dt.datetime | None = None) -> None:
    add_trades(sim, "kraken", key, [{"base": base, "quote": "USD", "side": side, "amount": amount, "price": "100",
                                     "when": when or dt.datetime.now(dt.UTC)}])


def outcomes(carol: Api, alice: Api, employee_id: int) -> list[tuple[str, str, Any]]:
    txs = alice.get(f"/employees/{employee_id}/transactions")["transactions"]
    return [(t["asset"], t["kind"], t["preclearance"]) for t in sorted(txs, key=lambda t: t["id"])]


def test_a_trade_within_the_approval_matches_and_one_over_it_raises_an_alert(
        sta: Any, sim: RunningSim, carol: Api) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    employee_id = employee_of(sta, cid)
    rule = carol.post("/rules", {"name": "Ask first", "kind": "preclearance_required"})
    assert rule["kind"] == "preclearance_required"
    request = approve(carol, employee_id, "BTC", "buy", "1")
    trade(sim, key, "BTC", "buy", "0.6")
    trade(sim, key, "BTC", "buy", "0.5")  # 1.1 in all: exactly the 10 % tolerance
    sync(sta, cid)
    alice = Api(carol.client, sta, "alice")
    assert outcomes(carol, alice, employee_id) == [
        ("BTC", "buy", {"status": "matched", "request_id": request["id"]}),
        ("BTC", "buy", {"status": "matched", "request_id": request["id"]})]
    trade(sim, key, "BTC", "buy", "0.2")  # over what is left
    sync(sta, cid)
    last = outcomes(carol, alice, employee_id)[-1]
    assert last == ("BTC", "buy", {"status": "over_quantity", "request_id": request["id"]})
    (alert,) = carol.get(f"/alerts?rule_id={rule['id']}")["alerts"]
    assert "over the pre-cleared quantity" in alert["title"] and f"request #{request['id']}" in alert["title"]
    with sta.store.read() as session:
        evidence = {(e.type, e.ref_id) for e in session.execute(select(AlertEvidence).where(
            AlertEvidence.alert_id == alert["id"])).scalars()}
    assert ("preclearance", request["id"]) in evidence
    assert any(kind == "transaction" for kind, _ref in evidence)


def test_an_expired_approval_does_not_match(sta: Any, sim: RunningSim, carol: Api) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    employee_id = employee_of(sta, cid)
    request = approve(carol, employee_id, "ETH", "sell", "2")
    with sta.store.unit_of_work() as session:
        session.execute(update(PreclearanceRequest).where(PreclearanceRequest.id == request["id"]).values(
            valid_from=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1)))
    carol.post("/rules", {"name": "Ask first", "kind": "preclearance_required"})
    trade(sim, key, "ETH", "sell", "1")
    sync(sta, cid)
    alice = Api(carol.client, sta, "alice")
    assert outcomes(carol, alice, employee_id) == [
        ("ETH", "sell", {"status": "outside_window", "request_id": request["id"]})]
    (alert,) = carol.get("/alerts?kind=rule_breach")["alerts"]
    assert "outside the pre-clearance window" in alert["title"]


def test_no_request_alerts_unless_exempt_and_the_employee_sees_the_outcome(
        sta: Any, sim: RunningSim, carol: Api) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    employee_id = employee_of(sta, cid)
    carol.post("/rules", {"name": "Ask first", "kind": "preclearance_required",
                          "params": {"exempt_assets": ["ETH"]}})
    denied_side = approve(carol, employee_id, "BTC", "buy", "5")  # a buy approval does not cover a sell
    trade(sim, key, "BTC", "sell", "1")
    trade(sim, key, "ETH", "buy", "1")
    sync(sta, cid)
    alice = Api(carol.client, sta, "alice")
    assert sorted(outcomes(carol, alice, employee_id), key=lambda o: o[0]) == [
        ("BTC", "sell", {"status": "no_request", "request_id": None}),
        ("ETH", "buy", {"status": "no_request", "request_id": None})]
    alerts = carol.get("/alerts?kind=rule_breach")["alerts"]
    assert len(alerts) == 1 and "BTC" in alerts[0]["title"] and "without pre-clearance" in alerts[0]["title"]
    assert denied_side["status"] == "approved"
    # The employee sees the same outcome on their own trades (portal session through a one-time link).
    from tests.portal.conftest import sign_in
    from tests.portal.test_sign_in import printed_link

    client = carol.client
    client.delete_cookie("session")
    assert sign_in(client, printed_link(sta, employee_id)).status_code == 302
    mine = client.get("/api/v1/me/transactions").get_json()["transactions"]
    assert {t["asset"]: t["preclearance"]["status"] for t in mine} == {"BTC": "no_request", "ETH": "no_request"}
    assert "no request" in client.get("/me").text


def test_a_rule_created_later_judges_only_trades_after_it(sta: Any, sim: RunningSim, carol: Api) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    trade(sim, key, "BTC", "buy", "1", when=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    sync(sta, cid)
    carol.post("/rules", {"name": "Ask first", "kind": "preclearance_required"})
    assert carol.get("/alerts?kind=rule_breach")["alerts"] == []
    bad = carol.send("POST", "/rules", {"name": "x", "kind": "preclearance_required",
                                        "params": {"exempt_below": "-5"}}, 400)
    assert bad["error"]["field"] == "params.exempt_below"


def test_a_new_prediction_position_matches_a_market_approval(sta: Any, sim: RunningSim, carol: Api) -> None:
    from appliance.sim.venues.polymarket import MARKETS
    from tests.conduct.conftest import new_employee, onboard_wallet

    fed = next(m for m in MARKETS if "Fed" in m.question)
    employee_id = new_employee(sta, "Pat Predictor")
    made = carol.post("/preclearances", {"employee_id": employee_id, "market_id": fed.condition_id,
                                         "venue": "polymarket", "side": "yes", "quantity": "100"})
    carol.post(f"/preclearances/{made['id']}/decision", {"approve": True, "comment": "ok"}, 200)
    carol.post("/rules", {"name": "Ask first", "kind": "preclearance_required"})
    address = sim.control("POST", "polymarket/wallets", {"positions": 0, "trades": 0, "activity": 0})["address"]
    sim.control("POST", f"polymarket/wallets/{address}/positions", {"positions": [
        {"condition_id": fed.condition_id, "outcome_index": 0, "size": "80", "avg_price": "0.3"},
        {"condition_id": fed.condition_id, "outcome_index": 1, "size": "5", "avg_price": "0.7"}]})
    cid = onboard_wallet(sta, employee_id, "polymarket", address)
    sync(sta, cid)
    from appliance.store.models import PreclearanceMatch

    with sta.store.read() as session:
        found = {(m.status, m.request_id, m.quantity) for m in session.execute(
            select(PreclearanceMatch).where(PreclearanceMatch.connection_id == cid)).scalars()}
    assert found == {("matched", made["id"], Decimal(80)), ("no_request", None, Decimal(5))}
    (alert,) = carol.get("/alerts?kind=rule_breach")["alerts"]
    assert "No position" in alert["title"] and "without pre-clearance" in alert["title"]
