"""Each kind of rule against records synced from the simulators: holding period across two venues,
blackout windows by group, prediction-market keywords as whole words, thresholds at the value of the
trade's own time, transfers to addresses never connected."""

from __future__ import annotations

from typing import Any

from appliance.services.rules.matching import text_matches
from appliance.sim.venues.polymarket import MARKETS
from tests.conduct.conftest import (
    add_trades,
    days_ago,
    new_employee,
    onboard_key_for,
    onboard_wallet,
    sync,
)
from tests.support.sim import RunningSim


def test_keyword_matching_is_whole_word_and_case_insensitive() -> None:
    assert text_matches("Acme", "Acme Corp Q4 earnings beat?")
    assert text_matches("acme corp", "ACME   Corp Q4 earnings beat?")
    assert text_matches("Q4", "Acme Corp Q4 earnings beat?")
    assert not text_matches("Acme", "Acmes Corp Q4 earnings beat?")
    assert not text_matches("Acme", "NotAcme rally")
    assert not text_matches("earning", "Acme Corp Q4 earnings beat?")
    assert text_matches("S&P 500", "Will the S&P 500 close higher?")


def test_prediction_keyword_matches_market_titles(sta: Any, sim: RunningSim, api: Any) -> None:
    acme = next(m for m in MARKETS if m.question.startswith("Acme Corp"))
    fed = next(m for m in MARKETS if "Fed" in m.question)
    address = sim.control("POST", "polymarket/wallets", {"positions": 0, "trades": 0, "activity": 0})["address"]
    sim.control("POST", f"polymarket/wallets/{address}/positions", {"positions": [
        {"condition_id": acme.condition_id, "outcome_index": 0, "size": "120", "avg_price": "0.41"},
        {"condition_id": fed.condition_id, "outcome_index": 1, "size": "50", "avg_price": "0.3"}]})
    employee = new_employee(sta, "Pat Predictor")
    cid = onboard_wallet(sta, employee, "polymarket", address)
    sync(sta, cid)
    carol = api("carol")
    miss = carol.post("/lists", {"name": "Plural", "kind": "restricted", "entries": [
        {"type": "market_text", "value": "Acmes"}]})
    assert miss["evaluation"]["alerts_raised"] == 0
    hit = carol.post("/lists", {"name": "Acme deal", "kind": "restricted", "entries": [
        {"type": "market_text", "value": "acme"}]})
    assert hit["evaluation"]["alerts_raised"] == 1
    (alert,) = carol.get(f"/alerts?rule_id={hit['rules'][0]['id']}")["alerts"]
    detail = carol.get(f"/alerts/{alert['id']}")["detail"]
    assert detail["records"][0]["type"] == "position"
    assert detail["records"][0]["market_title"] == acme.question
    assert detail["entries"] == [{"id": hit["entries"][0]["id"], "type": "market_text", "value": "acme"}]
    # The employee is flagged now: Compliance sees the position.
    positions = carol.get(f"/employees/{employee}/predictions")["positions"]
    assert {p["market_title"] for p in positions} == {acme.question, fed.question}


def test_holding_period_across_two_venues(sta: Any, sim: RunningSim, api: Any) -> None:
    employee = new_employee(sta, "Hana Holder")
    kraken, kraken_key = onboard_key_for(sta, sim, "kraken", employee)
    binance, binance_key = onboard_key_for(sta, sim, "binance", employee)
    add_trades(sim, "kraken", kraken_key, [
        {"base": "SOL", "quote": "USDT", "side": "buy", "amount": "5", "price": "90", "when": days_ago(60)},
        {"base": "SOL", "quote": "USDT", "side": "buy", "amount": "4", "price": "95", "when": days_ago(12)}])
    add_trades(sim, "binance", binance_key, [
        # FIFO: the first 5 come from the 60-day-old lot (fine), the next 3 from the 12-day-old one (too soon).
        {"base": "SOL", "quote": "USDT", "side": "sell", "amount": "5", "price": "99", "when": days_ago(5)},
        {"base": "SOL", "quote": "USDT", "side": "sell", "amount": "3", "price": "99", "when": days_ago(4)}])
    sync(sta, kraken, binance)
    carol = api("carol")
    rule = carol.post("/rules", {"name": "Hold 30 days", "kind": "holding_period", "params": {"days": 30}})
    assert rule["severity"] == "warning" and rule["alert_kind"] == "rule_breach"
    assert rule["evaluation"]["alerts_raised"] == 1
    (alert,) = carol.get(f"/alerts?rule_id={rule['id']}")["alerts"]
    assert alert["kind"] == "rule_breach" and alert["employee_id"] == employee
    records = carol.get(f"/alerts/{alert['id']}")["detail"]["records"]
    assert [(r["kind"], r["venue"]) for r in records] == [("sell", "binance"), ("buy", "kraken")]
    assert "8 day(s) after buying it on" in alert["title"]
    shorter = carol.post("/rules", {"name": "Hold 7 days", "kind": "holding_period", "params": {"days": 7}})
    assert shorter["evaluation"]["alerts_raised"] == 0
    carol.post("/rules", {"name": "bad", "kind": "holding_period", "params": {"days": 0}}, status=400)


def test_blackout_applies_to_its_group_only(sta: Any, sim: RunningSim, api: Any) -> None:
    insider, outsider = new_employee(sta, "Ines Insider", "Research"), new_employee(sta, "Otto Outside", "Research")
    conns = []
    for employee in (insider, outsider):
        cid, key = onboard_key_for(sta, sim, "kraken", employee)
        add_trades(sim, "kraken", key, [
            {"base": "ETH", "quote": "USD", "side": "buy", "amount": "1", "price": "2000", "when": days_ago(3)},
            {"base": "BTC", "quote": "USD", "side": "buy", "amount": "0.1", "price": "40000", "when": days_ago(20)}])
        conns.append(cid)
    sync(sta, *conns)
    carol = api("carol")
    group = carol.post("/groups", {"name": "Deal team", "employee_ids": [insider]})
    assert [m["name"] for m in group["members"]] == ["Ines Insider"]
    rule = carol.post("/rules", {"name": "Q4 results", "kind": "blackout", "applies_to": {"groups": ["Deal team"]},
                                 "params": {"start": days_ago(7).date().isoformat(),
                                            "end": days_ago(-1).date().isoformat()}})
    assert rule["applies_to_text"] == "group Deal team"
    alerts = carol.get(f"/alerts?rule_id={rule['id']}")["alerts"]
    assert [(a["employee_name"], a["severity"]) for a in alerts] == [("Ines Insider", "critical")]
    # Otto joins the group: his history is evaluated against its rules at once.
    added = carol.post(f"/groups/{group['id']}/members", {"employee_ids": [outsider]}, status=200)
    assert added["added"] == [outsider] and added["evaluation"]["alerts_raised"] == 1
    # Only listed assets when the blackout lists some.
    listed = carol.post("/rules", {"name": "BTC only", "kind": "blackout", "params": {
        "start": days_ago(7).date().isoformat(), "end": days_ago(-1).date().isoformat(), "assets": ["btc"]}})
    assert listed["evaluation"]["alerts_raised"] == 0


def test_threshold_uses_the_value_at_trade_time(sta: Any, sim: RunningSim, api: Any) -> None:
    employee = new_employee(sta, "Theo Trader")
    cid, key = onboard_key_for(sta, sim, "kraken", employee)
    add_trades(sim, "kraken", key, [
        # Worth 15,000 USD when traded (its own quote leg), whatever BTC is worth today.
        {"base": "BTC", "quote": "USD", "side": "buy", "amount": "0.5", "price": "30000", "when": days_ago(40)},
        {"base": "BTC", "quote": "USD", "side": "buy", "amount": "0.1", "price": "30000", "when": days_ago(30)},
        {"base": "SOL", "quote": "USDT", "side": "buy", "amount": "1", "price": "90", "when": days_ago(2)}])
    sync(sta, cid)
    carol = api("carol")
    rule = carol.post("/rules", {"name": "Large trades", "kind": "threshold",
                                 "params": {"value": "10000", "on": ["trade"]}})
    assert rule["params"]["currency"] == "USD"
    (alert,) = carol.get(f"/alerts?rule_id={rule['id']}")["alerts"]
    detail = carol.get(f"/alerts/{alert['id']}")["detail"]
    assert (detail["value"], detail["currency"], detail["threshold"]) == ("15000", "USD", "10000")
    assert detail["records"][0]["asset"] == "BTC"
    # The SOL/USDT trade was neither passed nor failed: it is recorded as could-not-be-valued.
    assert carol.get(f"/rules/{rule['id']}")["could_not_be_valued"] == 1
    carol.post("/rules", {"name": "x", "kind": "threshold", "params": {"value": "-5"}}, status=400)
    carol.post("/rules", {"name": "x", "kind": "threshold", "params": {"value": "5", "currency": "EUR"}},
               status=400)


def test_transfer_to_an_address_never_connected(sta: Any, sim: RunningSim, api: Any) -> None:
    employee = new_employee(sta, "Nick New")
    cid, key = onboard_key_for(sta, sim, "binance", employee)
    own = "0x" + "ab" * 20
    onboard_wallet(sta, employee, "polymarket", own)
    stranger = "0x" + "cd" * 20
    for address in (own, stranger, stranger):
        sim.control("POST", f"binance/keys/{key['api_key']}/withdrawals", {"withdrawals": [
            {"asset": "USDT", "amount": "100", "address": address, "timestamp": int(days_ago(1).timestamp() * 1000)}]})
    sync(sta, cid)
    carol = api("carol")
    rule = carol.post("/rules", {"name": "Undisclosed accounts", "kind": "new_account", "params": {}})
    (alert,) = carol.get(f"/alerts?rule_id={rule['id']}")["alerts"]
    assert alert["severity"] == "info" and alert["kind"] == "watch"
    assert carol.get(f"/alerts/{alert['id']}")["detail"]["address"] == stranger


def test_threshold_takes_the_pricing_jobs_value_at_trade_time(sta: Any, sim: RunningSim, api: Any) -> None:
    from appliance.poller.jobs import price_tick

    employee = new_employee(sta, "Vera Valued")
    cid, key = onboard_key_for(sta, sim, "kraken", employee)
    add_trades(sim, "kraken", key, [
        {"base": "SOL", "quote": "USDT", "side": "buy", "amount": "400", "price": "90", "when": days_ago(2)}])
    sync(sta, cid)
    carol = api("carol")
    rule = carol.post("/rules", {"name": "Large", "kind": "threshold", "params": {"value": "1", "on": ["trade"]}})
    assert carol.get(f"/rules/{rule['id']}")["could_not_be_valued"] == 1  # not priced yet: neither passed nor failed
    price_tick(sta.appliance)  # the pricing job values the trade at its own time, then the rule looks again
    detail = carol.get(f"/rules/{rule['id']}")
    alerts = carol.get(f"/alerts?rule_id={rule['id']}")["alerts"]
    assert detail["could_not_be_valued"] == 0
    (alert,) = alerts
    value = carol.get(f"/alerts/{alert['id']}")["detail"]
    assert value["value_source"].endswith("at the trade's time") and value["currency"] == "USD"
