"""KuCoin traps, against the simulator with the real ccxt client."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import ccxt
import pytest

from appliance.errors import VenueAuthError, VenuePermissionError, VenueTransient
from appliance.sim.core import now_ms
from appliance.venues.base import Credentials, Kind
from appliance.venues.registry import VenueRegistry
from appliance.venues.scope_policy import decide
from tests.support.sim import RunningSim
from tests.venues.helpers import creds_of, drain
from tests.venues.test_contract import account_of

DAY_MS = 86_400_000
EMPTY = {"trades": 0, "deposits": 0, "withdrawals": 0}


@pytest.fixture
def kucoin(registry: VenueRegistry) -> Any:
    return registry.get("kucoin")


def test_missing_general_is_permission_although_ccxt_says_authentication(sim: RunningSim, kucoin: Any) -> None:
    key = sim.create_key("kucoin", ["trade"])
    creds = creds_of(key)
    with pytest.raises(ccxt.AuthenticationError) as raw:
        kucoin.client(creds).privateGetAccounts()
    assert '"400007"' in str(raw.value)
    with pytest.raises(VenuePermissionError) as caught:
        kucoin.fetch_balances(creds)
    assert caught.value.venue_code == "400007"
    scope = kucoin.probe_scope(creds)
    assert scope.read is False
    assert scope.verified
    decision = decide(kucoin, scope, "reject")
    assert not decision.accepted
    assert "cannot read" in decision.message


def test_wrong_passphrase_is_authentication(sim: RunningSim, kucoin: Any) -> None:
    key = sim.create_key("kucoin", ["read"])
    with pytest.raises(VenueAuthError) as caught:
        kucoin.probe_scope(Credentials(key["api_key"], key["api_secret"], "not-the-passphrase"))
    assert caught.value.venue_code == "400004"


def test_passphrase_is_sent_hmaced_not_plain(sim: RunningSim, kucoin: Any) -> None:
    key = sim.create_key("kucoin", ["read"])
    sim.control("DELETE", "requests")
    kucoin.fetch_balances(creds_of(key))
    (entry,) = sim.requests_log("kucoin")
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    assert headers["kc-api-key-version"] == "2"
    assert headers["kc-api-passphrase"] != key["passphrase"]


def test_stale_timestamp_rejected(sim: RunningSim, kucoin: Any) -> None:
    key = sim.create_key("kucoin", ["read"])
    creds = creds_of(key)
    client = kucoin.client(creds)
    client.options["timeDifference"] = 10_000
    with pytest.raises(VenueTransient) as caught:
        kucoin.call(client.privateGetAccounts, creds=creds)
    assert caught.value.venue_code == "400002"


@pytest.mark.parametrize(("permissions", "reported", "granted"), [
    (["read", "trade"], "General,Spot", ["trade"]),
    (["read", "transfer"], "General,InnerTransfer", ["transfer"]),
    (["read", "withdraw"], "General,Transfer", ["transfer", "withdraw"]),
])
def test_scope_from_permission(sim: RunningSim, kucoin: Any, permissions: list[str], reported: str,
                               granted: list[str]) -> None:
    key = sim.create_key("kucoin", permissions)
    scope = kucoin.probe_scope(creds_of(key))
    assert scope.evidence["permission"] == reported
    assert scope.granted() == granted
    assert "apiKey" not in scope.evidence
    assert key["api_key"] not in repr(scope.as_dict())
    decision = decide(kucoin, scope, "reject")
    assert not decision.accepted
    assert reported.split(",")[1] in decision.message


def test_no_signed_call_outside_the_allowlist(sim: RunningSim, kucoin: Any) -> None:
    key = sim.create_key("kucoin", ["read"])
    creds = creds_of(key)
    sim.control("DELETE", "requests")
    kucoin.new_client(None).load_markets()
    kucoin.probe_scope(creds)
    kucoin.fetch_balances(creds)
    for stream in kucoin.streams:
        kucoin.fetch_transactions(creds, stream, {})
    paths = [(e["path"], any(h.lower() == "kc-api-key" for h in e["headers"])) for e in sim.requests_log("kucoin")]
    assert paths[0] == ("/api/v2/symbols", False)  # markets: public, no margin/hf/account-mode call
    assert {p for p, _ in paths} == {"/api/v2/symbols", "/api/v1/user/api-key", "/api/v1/accounts",
                                    "/api/v1/fills", "/api/v1/deposits", "/api/v1/withdrawals"}


def test_venue_refuses_windows_longer_than_seven_days(sim: RunningSim, kucoin: Any) -> None:
    key = sim.create_key("kucoin", ["read"])
    client = kucoin.client(creds_of(key))
    end = now_ms()
    with pytest.raises(ccxt.BadRequest):
        client.privateGetFills({"startAt": end - 8 * DAY_MS, "endAt": end})


def test_pages_inside_one_window_and_across_windows(sim: RunningSim, kucoin: Any) -> None:
    key = sim.create_key("kucoin", ["read"], history=EMPTY)
    start = now_ms() - 3 * DAY_MS
    sim.control("POST", f"kucoin/keys/{key['api_key']}/trades", {"count": 1100, "start_ms": start})
    sim.control("POST", f"kucoin/keys/{key['api_key']}/trades", {"count": 5, "start_ms": now_ms() - 40 * DAY_MS})
    creds = creds_of(key)
    records, last = drain(kucoin, creds, "trades")
    cursor = last.cursor
    ids = [r.venue_tx_id for r in records]
    assert len(ids) == len(set(ids)) == 1105
    assert set(ids) == sim.app.state.venues["kucoin"].stream_ids(account_of(sim, "kucoin", key["api_key"]), "trades")
    assert {"until", "back", "floor"} <= set(cursor)
    assert now_ms() - cursor["until"] < 60_000
    assert cursor["back"] == cursor["floor"]  # the first sync walked back to the year's start
    sim.control("DELETE", "requests")
    again, _ = drain(kucoin, creds, "trades", cursor)
    assert {r.venue_tx_id for r in again} <= set(ids)  # the overlap re-reads, it never invents
    (asked,) = {int(q["startAt"]) for q in (dict(parse_qsl(e["query"])) for e in sim.requests_log("kucoin"))
                if "startAt" in q}
    assert asked == cursor["until"] - DAY_MS  # the next run starts a day behind the last one's end


def test_first_sync_walks_back_a_year_newest_first(sim: RunningSim, kucoin: Any) -> None:
    key = sim.create_key("kucoin", ["read"], history=EMPTY)
    creds = creds_of(key)
    page = kucoin.fetch_transactions(creds, "deposits", {})
    assert not page.done
    done, total = page.progress
    assert total == -(-365 * DAY_MS // (7 * DAY_MS)) and done == 16
    assert page.complete_until is not None  # the newest windows first: complete up to now at once
    assert page.cursor["back"] == page.cursor["run_end"] - 16 * 7 * DAY_MS + 1


def test_deposits_are_identified_by_wallet_tx_id(sim: RunningSim, kucoin: Any) -> None:
    key = sim.create_key("kucoin", ["read"], history=EMPTY)
    made = sim.control("POST", f"kucoin/keys/{key['api_key']}/deposits", {"deposits": [
        {"asset": "BTC", "amount": "0.00000001", "fee": "0.0005"}]})
    (record,), _ = drain(kucoin, creds_of(key), "deposits")
    account = account_of(sim, "kucoin", key["api_key"])
    (deposit,) = [d for d in account.deposits if d.id == made["ids"][0]]
    assert record.venue_tx_id == deposit.txid
    assert record.kind == Kind.DEPOSIT
    assert (record.amount, record.fee_amount) == (Decimal("0.00000001"), Decimal("0.0005"))


def test_balances_of_every_account_type(sim: RunningSim, kucoin: Any) -> None:
    key = sim.create_key("kucoin", ["read"], history=EMPTY)
    sim.app.state.venues["kucoin"].keys[key["api_key"]].extra["funding"] = {"USDT": Decimal("12345678.12345678")}
    balances = {(b.account, b.asset): b.amount for b in kucoin.fetch_balances(creds_of(key))}
    assert balances[("main", "USDT")] == Decimal("12345678.12345678")
    assert balances[("trade", "BTC")] == Decimal("0.5")


def test_guide_says_what_to_untick() -> None:
    from appliance.venues.exchanges.kucoin import KucoinAdapter

    warnings = " ".join(step.text for step in KucoinAdapter.guide if step.warning)
    for permission in ("Spot", "Margin", "Futures", "Transfer"):
        assert permission in warnings
