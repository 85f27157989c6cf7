"""Restricted and watch lists against synced trades: one critical alert with its evidence, visible to
Compliance; never two, however often evaluated; effective dates respected."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from appliance.store.models import Alert
from tests.conduct.conftest import QUIET, add_trades, days_ago, employee_of, sync
from tests.support.sim import RunningSim
from tests.sync.conftest import onboard, vigatra, write_config


def alerts_of(sta: Any, **where: Any) -> list[Alert]:
    with sta.store.read() as session:
        stmt = select(Alert).order_by(Alert.id)
        for name, value in where.items():
            stmt = stmt.where(getattr(Alert, name) == value)
        rows = list(session.execute(stmt).scalars())
        session.expunge_all()
        return rows


def test_restricted_trade_raises_one_critical_alert_visible_to_compliance(
        sta: Any, sim: RunningSim, api: Any, tmp_path: Any) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    add_trades(sim, "kraken", key, [{"base": "SOL", "quote": "USDT", "side": "buy", "amount": "3", "price": "98.5",
                                     "when": days_ago(2)}])
    sync(sta, cid)
    employee = employee_of(sta, cid)
    carol = api("carol")
    # Before any list, Compliance (flagged scope) sees nothing of this employee.
    carol.get(f"/employees/{employee}/transactions", status=404)

    created = carol.post("/lists", {"name": "Deal Falcon", "kind": "restricted", "entries": [
        {"type": "asset", "value": "sol", "note": "issuer of deal FALCON-7"}]})
    assert created["kind"] == "restricted" and created["entries"][0]["value"] == "SOL"
    assert [r["kind"] for r in created["rules"]] == ["restricted"]
    assert created["evaluation"]["alerts_raised"] == 1

    found = carol.get(f"/alerts?employee_id={employee}")["alerts"]
    assert len(found) == 1
    alert = carol.get(f"/alerts/{found[0]['id']}")
    assert alert["kind"] == "rule_breach" and alert["severity"] == "critical" and alert["status"] == "open"
    assert alert["rule_id"] == created["rules"][0]["id"] and alert["rule_name"].startswith("Restricted")
    assert alert["list_entry_id"] == created["entries"][0]["id"]
    assert alert["detail"]["entries"][0]["value"] == "SOL"
    assert "FALCON" not in str(alert), "the entry's confidential note never travels with an alert"
    (record,) = alert["detail"]["records"]
    assert record["type"] == "transaction" and record["asset"] == "SOL" and record["kind"] == "buy"
    assert alert["employee_name"] and alert["history"][0]["action"] == "created"

    # The alert flags the employee: Compliance now sees the evidence record itself.
    tx = carol.get(f"/employees/{employee}/transactions/{record['id']}")
    assert tx["asset"] == "SOL" and Decimal(tx["amount"]) == 3

    # Evaluated again, twice (API and CLI): still one alert.
    carol.post("/rules/evaluate", {}, status=200)
    config = write_config(sta, tmp_path / "v.yaml")
    for _ in range(2):
        done = vigatra(config, "rules", "evaluate")
        assert done.returncode == 0, done.stderr
        assert "alerts raised: 0" in done.stdout
    done = vigatra(config, "rules", "evaluate", "--employee", str(employee))
    assert done.returncode == 0, done.stderr
    assert len(alerts_of(sta, employee_id=employee, kind="rule_breach")) == 1

    # A sync that brings nothing new raises nothing; one that brings a new SOL trade raises one more.
    sync(sta, cid)
    assert len(alerts_of(sta, employee_id=employee, kind="rule_breach")) == 1
    add_trades(sim, "kraken", key, [{"base": "SOL", "quote": "USDT", "side": "sell", "amount": "1",
                                     "price": "99", "when": days_ago(0.01)}])
    sync(sta, cid)
    assert len(alerts_of(sta, employee_id=employee, kind="rule_breach")) == 2
    with sta.store.read() as session:
        assert session.execute(select(func.count()).select_from(Alert).where(
            Alert.rule_id.is_not(None)).group_by(Alert.rule_id, Alert.record_key).having(
            func.count() > 1)).first() is None


def test_entry_effective_later_raises_nothing_for_earlier_trades(sta: Any, sim: RunningSim, api: Any) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    add_trades(sim, "kraken", key, [
        {"base": "SOL", "quote": "USDT", "side": "buy", "amount": "2", "price": "98", "when": days_ago(10)},
        {"base": "SOL", "quote": "USDT", "side": "buy", "amount": "1", "price": "97", "when": days_ago(1)}])
    sync(sta, cid)
    employee = employee_of(sta, cid)
    carol = api("carol")
    effective = days_ago(5).date().isoformat()
    created = carol.post("/lists", {"name": "Later", "kind": "restricted", "entries": [
        {"type": "asset", "value": "SOL", "effective_from": effective}]})
    assert created["evaluation"]["alerts_raised"] == 1
    (alert,) = carol.get(f"/alerts?employee_id={employee}")["alerts"]
    assert alert["occurred_at"] >= effective

    # Moving the start later than every trade raises nothing more and takes nothing away.
    entry = created["entries"][0]["id"]
    carol.send("PATCH", f"/lists/{created['id']}/entries/{entry}", {"effective_from": days_ago(-1).date().isoformat()})
    assert len(carol.get(f"/alerts?employee_id={employee}")["alerts"]) == 1
    history = carol.get(f"/lists/{created['id']}")["history"]
    assert [h["action"] for h in history] == ["created", "entry_changed"]
    assert history[1]["changed_by"] == "carol" and history[1]["version"] == 2


def test_watch_list_raises_info_alerts_and_bad_input_changes_nothing(sta: Any, sim: RunningSim, api: Any) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    add_trades(sim, "kraken", key, [{"base": "ETH", "quote": "USD", "side": "buy", "amount": "1", "price": "2000",
                                     "when": days_ago(3)}])
    sync(sta, cid)
    carol = api("carol")
    bad = carol.post("/lists", {"name": "W", "kind": "watch", "entries": [{"type": "asset", "value": "ETH"},
                                                                        {"type": "venue", "value": "krakn"}]},
                     status=400)
    assert "krakn" in bad["error"]["message"] and bad["error"]["field"] == "entries[1].value"
    assert carol.get("/lists")["lists"] == []
    assert carol.post("/lists", {"name": "W", "kind": "watch", "bogus": 1}, status=400)["error"]["field"] == "bogus"
    watch = carol.post("/lists", {"name": "W", "kind": "watch", "entries": [{"type": "venue", "value": "kraken"}]})
    assert watch["rules"] == [] and watch["evaluation"]["alerts_raised"] == 0
    rule = carol.post("/rules", {"name": "Kraken watch", "kind": "watch", "params": {"list_id": watch["id"]}})
    assert rule["severity"] == "info" and rule["evaluation"]["alerts_raised"] >= 1
    alerts = carol.get(f"/alerts?rule_id={rule['id']}")["alerts"]
    assert alerts and {a["kind"] for a in alerts} == {"watch"} and {a["severity"] for a in alerts} == {"info"}
    assert carol.post("/rules", {"name": "x", "kind": "restricted", "params": {"list_id": watch["id"]}},
                      status=400)["error"]["field"] == "params.list_id"


def test_viewer_reads_rules_not_lists(sta: Any, api: Any) -> None:
    carol, victor = api("carol"), api("victor")
    carol.post("/lists", {"name": "Secret deals", "kind": "restricted", "entries": [{"type": "asset", "value": "X"}]})
    victor.get("/lists", status=403)
    assert [r["kind"] for r in victor.get("/rules")["rules"]] == ["restricted"]
    victor.post("/rules", {"name": "n", "kind": "new_account"}, status=403)


