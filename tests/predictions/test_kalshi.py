"""Kalshi with our own RSA-PSS client against a simulator that verifies every signature: a good signature
is verified and a forged, stale or query-signed one refused; only keys scoped exactly ["read"] are
accepted; key management never leaves the box; balance, positions, fills and settlements equal the
venue's, exactly, once, across pages, runs and the historical archive.
"""

from __future__ import annotations

import base64
import time
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from appliance.errors import (
    EgressRefused,
    VenueAuthError,
    VenueBadData,
    VenuePermissionError,
    VenueRateLimited,
    VenueTransient,
)
from appliance.venues.base import Credentials, Kind
from appliance.venues.predictions import KalshiAdapter
from appliance.venues.scope_policy import decide
from tests.predictions.conftest import drain
from tests.support.sim import RunningSim

VENUE = "kalshi"
HOST = "https://api.elections.kalshi.com"


def creds_of(key: dict[str, Any]) -> Credentials:
    return Credentials(key["api_key"], key["api_secret"])


def ledger(sim: RunningSim, key: dict[str, Any]) -> dict[str, Any]:
    return dict(sim.control("GET", f"{VENUE}/keys/{key['api_key']}/ledger"))


def entries_for(sim: RunningSim, key: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for entry in sim.requests_log(VENUE):
        headers = {k.lower(): v for k, v in entry["headers"].items()}
        if headers.get("kalshi-access-key") == key["api_key"]:
            out.append(entry)
    return out


def raw_get(sim: RunningSim, key: dict[str, Any], path: str, *, query: str = "", signed_path: str | None = None,
            timestamp: int | None = None) -> requests.Response:
    """A hand-signed request straight at the simulator, to see what the venue itself enforces."""
    private = serialization.load_pem_private_key(key["api_secret"].encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    stamp = str(timestamp if timestamp is not None else int(time.time() * 1000))
    message = (stamp + "GET" + (signed_path or path)).encode()
    signature = private.sign(message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                             hashes.SHA256())
    headers = {"KALSHI-ACCESS-KEY": key["api_key"], "KALSHI-ACCESS-TIMESTAMP": stamp,
               "KALSHI-ACCESS-SIGNATURE": base64.b64encode(signature).decode()}
    return requests.get(f"{sim.base_url(VENUE)}{path}" + (f"?{query}" if query else ""), headers=headers, timeout=10)


# -- signatures -----------------------------------------------------------------------------------

def test_good_signature_is_verified_by_the_venue(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read"])
    kalshi.fetch_balances(creds_of(key))
    (entry,) = entries_for(sim, key)
    assert entry["path"] == "/trade-api/v2/portfolio/balance"
    assert entry["auth"] == "verified"


def test_bad_signature_is_refused(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key, other = sim.create_key(VENUE, ["read"]), sim.create_key(VENUE, ["read"])
    forged = Credentials(key["api_key"], other["api_secret"])
    with pytest.raises(VenueAuthError) as caught:
        kalshi.probe_scope(forged)
    assert caught.value.venue_code == "authentication_error"
    assert key["api_key"] not in str(caught.value) and "BEGIN" not in str(caught.value)
    assert [e["auth"] for e in entries_for(sim, key)] == ["rejected: invalid signature"]


def test_the_venue_checks_path_without_query_and_the_clock(sim: RunningSim) -> None:
    key = sim.create_key(VENUE, ["read"])
    path = "/trade-api/v2/portfolio/fills"
    assert raw_get(sim, key, path, query="limit=5").status_code == 200
    signed_with_query = raw_get(sim, key, path, query="limit=5", signed_path=path + "?limit=5")
    assert signed_with_query.status_code == 401
    assert signed_with_query.json()["error"]["code"] == "authentication_error"
    stale = raw_get(sim, key, path, timestamp=int(time.time() * 1000) - 10_000)
    assert stale.status_code == 401 and "window" in stale.json()["error"]["message"]


def test_a_key_that_is_not_a_key_is_refused_before_anything_is_sent(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read"])
    lines = key["api_secret"].splitlines()
    truncated = "\n".join(lines[:3] + lines[-1:])
    sim.control("DELETE", "requests")
    for creds, phrase in ((Credentials(key["api_key"], "not a pem"), "whole contents"),
                          (Credentials("my-key", key["api_secret"]), "UUID"),
                          (Credentials(key["api_key"], truncated), "could not be read")):
        with pytest.raises(VenueAuthError) as caught:
            kalshi.probe_scope(creds)
        assert phrase in caught.value.message
        assert "MII" not in caught.value.message
    assert sim.requests_log(VENUE) == []


def test_a_pem_pasted_on_one_line_still_signs(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read"])
    flattened = key["api_secret"].replace("\n", " ").replace("-----END", "\r\n-----END")
    assert kalshi.probe_scope(Credentials(" " + key["api_key"] + "\n", flattened)).read_only


# -- scope ----------------------------------------------------------------------------------------

def test_read_only_key_accepted(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read"])
    scope = kalshi.probe_scope(creds_of(key))
    assert scope.read_only and scope.evidence == {"listed": True, "scopes": ["read"]}
    decision = decide(kalshi, scope, "reject")
    assert decision.accepted and decision.verified
    assert key["api_key"] not in repr(scope.as_dict()) and key["api_secret"] not in repr(scope.as_dict())


@pytest.mark.parametrize(("permissions", "scopes", "granted"), [
    (["read", "trade"], ["read", "write"], ["trade", "transfer", "withdraw"]),
    (["read", "transfer"], ["read", "write::transfer"], ["transfer", "withdraw"]),
    (["read", "withdraw"], ["read", "write::transfer"], ["transfer", "withdraw"]),
])
def test_write_keys_rejected_with_instructions(sim: RunningSim, kalshi: KalshiAdapter, permissions: list[str],
                                               scopes: list[str], granted: list[str]) -> None:
    key = sim.create_key(VENUE, permissions)
    scope = kalshi.probe_scope(creds_of(key))
    assert scope.evidence["scopes"] == scopes
    assert scope.granted() == granted
    decision = decide(kalshi, scope, "accept_unverified")
    assert not decision.accepted
    assert decision.message == kalshi.regenerate_instructions(scope)
    assert "only the Read scope" in decision.message and scopes[1] in decision.message


@pytest.mark.parametrize(("scopes", "granted"), [
    (["read", "write::trade"], ["trade"]),
    (["read", "write::block_trade_accept"], ["trade"]),
    (["read", "read::portfolio_balance"], ["trade", "transfer", "withdraw"]),  # not exactly ["read"]
    (["read", "admin"], ["trade", "transfer", "withdraw"]),
])
def test_anything_but_exactly_read_fails_closed(sim: RunningSim, kalshi: KalshiAdapter, scopes: list[str],
                                                granted: list[str]) -> None:
    key = sim.create_key(VENUE, ["read"])
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/scopes", {"scopes": scopes})
    scope = kalshi.probe_scope(creds_of(key))
    assert scope.granted() == granted
    assert not decide(kalshi, scope, "accept_unverified").accepted


def test_a_key_missing_from_the_list_fails_closed(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read"])
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/unlist")
    scope = kalshi.probe_scope(creds_of(key))
    assert scope.escalated and scope.evidence["listed"] is False
    decision = decide(kalshi, scope, "accept_unverified")
    assert not decision.accepted and "did not list this key" in decision.message


def test_a_key_without_read_cannot_sync(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read"])
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/scopes", {"scopes": ["read::portfolio_balance"]})
    with pytest.raises(VenuePermissionError):
        kalshi.probe_scope(creds_of(key))


def test_revoked_key_is_an_authentication_error(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read"])
    creds = creds_of(key)
    kalshi.fetch_balances(creds)
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/revoke")
    with pytest.raises(VenueAuthError):
        kalshi.fetch_balances(creds)
    with pytest.raises(VenueAuthError):
        kalshi.probe_scope(creds)
    with pytest.raises(VenueAuthError):
        kalshi.fetch_transactions(creds, "fills", {})


def test_key_management_is_refused_inside_the_box(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read", "trade"])
    session = kalshi.egress.session(kalshi.id, kalshi.hosts, kalshi.read_endpoints)
    sim.control("DELETE", "requests")
    for method, path in (("POST", "/api_keys"), ("POST", "/api_keys/generate"),
                         ("DELETE", f"/api_keys/{key['api_key']}"), ("GET", f"/api_keys/{key['api_key']}"),
                         ("POST", "/portfolio/orders"), ("POST", "/portfolio/subaccounts/transfer")):
        with pytest.raises(EgressRefused):
            session.request(method, f"{HOST}/trade-api/v2{path}", json={"scopes": ["read", "write"]})
    assert sim.requests_log(VENUE) == []


# -- data -----------------------------------------------------------------------------------------

def test_balance_is_exact_dollars(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read"])
    (balance,) = kalshi.fetch_balances(creds_of(key))
    assert (balance.asset, balance.amount, balance.account) == ("USD", Decimal("1520.75"), "cash")


def test_positions_match_the_venue(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read"], history={"positions": 0, "fills": 0, "settlements": 0})
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/positions", {"positions": [
        {"ticker": "KXFEDDECISION-26DEC-C25", "position": "25", "avg_price": "0.5600"},
        {"ticker": "KXHIGHNY-26NOV30-B45.5", "position": "-3.5", "avg_price": "0.3333"},
        {"ticker": "KXACMEEARN-26Q4-BEAT", "position": "10", "avg_price": "0.9100"},
        {"ticker": "KXBTCD-26DEC31-T100000", "position": "7", "avg_price": "0.0350"},
        {"ticker": "KXPRESPARTY-2028-D", "position": "-1200", "avg_price": "0.4750"},
    ]})
    truth = {p["ticker"]: p for p in ledger(sim, key)["positions"]}
    positions = {p.market_id: p for p in kalshi.fetch_positions(creds_of(key))}
    assert set(positions) == set(truth)
    for ticker, p in positions.items():
        signed = Decimal(truth[ticker]["position_fp"])
        assert p.outcome == ("yes" if signed > 0 else "no") and p.size == abs(signed)
        exposure = Decimal(truth[ticker]["market_exposure_dollars"])
        assert p.avg_price == (exposure / abs(signed)).quantize(Decimal("0.000001"))
    fed = positions["KXFEDDECISION-26DEC-C25"]
    assert fed.market_title == "Fed cuts 25bps in December 2026?" and fed.category == "Economics"
    assert (fed.outcome, fed.size, fed.avg_price, fed.current_value) == ("yes", 25, Decimal("0.56"), Decimal("15.25"))
    weather = positions["KXHIGHNY-26NOV30-B45.5"]
    assert weather.category == "Climate and Weather"  # no category on the event: from its series
    assert (weather.outcome, weather.size, weather.current_value) == ("no", Decimal("3.5"), Decimal("2.765"))
    assert positions["KXACMEEARN-26Q4-BEAT"].current_value == 10  # settled YES: pays a dollar a contract
    assert positions["KXBTCD-26DEC31-T100000"].current_value == Decimal("2.345")  # no YES bid: last price
    assert positions["KXPRESPARTY-2028-D"].current_value == Decimal("624")  # NO bid = 1 - YES ask


def test_fills_match_once_across_pages_runs_and_the_archive(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read"], history={"fills": 450, "settlements": 0, "positions": 0})
    creds = creds_of(key)

    def fetch(stream: str, cursor: dict[str, Any]) -> Any:
        return kalshi.fetch_transactions(creds, stream, cursor)

    records, cursor, pages = drain(fetch, "fills")
    truth = {f["fill_id"]: f for f in ledger(sim, key)["fills"]}
    assert len(records) == len(truth) == 450
    assert {r.venue_tx_id for r in records} == set(truth)
    assert len(pages) >= 3
    paths = [e["path"] for e in entries_for(sim, key)]
    assert "/trade-api/v2/portfolio/fills" in paths and "/trade-api/v2/historical/fills" in paths
    for r in records:
        f = truth[r.venue_tx_id]
        assert r.kind == (Kind.BUY if f["action"] == "buy" else Kind.SELL)
        assert r.asset == f"{f['ticker']}:{f['side']}" and r.market == f["ticker"]
        assert r.price == Decimal(f[f"{f['side']}_price_dollars"]) and r.amount == Decimal(f["count_fp"])
        assert r.quote_amount == r.amount * r.price and r.fee_amount == Decimal(f["fee_cost"])
    assert drain(fetch, "fills", cursor)[0] == []
    made = sim.control("POST", f"{VENUE}/keys/{key['api_key']}/trades",
                       {"trades": [{"count": "2.5", "yes_price": "0.0350", "side": "no", "action": "buy"}]})
    added, cursor, _ = drain(fetch, "fills", cursor)
    assert [r.venue_tx_id for r in added] == made["ids"]
    assert added[0].price == Decimal("0.9650") and added[0].quote_amount == Decimal("2.41250000")
    assert drain(fetch, "fills", cursor)[0] == []


def test_settlements_are_exact_and_arrive_once(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read"], history={"fills": 0, "settlements": 7, "positions": 0})
    creds = creds_of(key)

    def fetch(stream: str, cursor: dict[str, Any]) -> Any:
        return kalshi.fetch_transactions(creds, stream, cursor)

    records, cursor, _ = drain(fetch, "settlements")
    truth = {f"{s['ticker']}:{s['settled_time']}": s for s in ledger(sim, key)["settlements"]}
    assert {r.venue_tx_id for r in records} == set(truth)
    for r in records:
        s = truth[r.venue_tx_id]
        assert r.kind == Kind.SETTLEMENT and r.asset == "USD"
        assert r.amount == Decimal(s["revenue"]) / 100 and r.fee_amount == Decimal(s["fee_cost"])
    assert drain(fetch, "settlements", cursor)[0] == []


# -- failures and privacy -------------------------------------------------------------------------

def test_rate_limit_outage_and_garbage_are_classified(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read"])
    creds = creds_of(key)
    sim.control("POST", f"{VENUE}/faults", {"fail_5xx": 1})
    with pytest.raises(VenueTransient):
        kalshi.fetch_positions(creds)
    sim.control("POST", f"{VENUE}/faults", {"malformed": 1})
    with pytest.raises(VenueBadData):
        kalshi.fetch_transactions(creds, "fills", {})
    sim.control("POST", f"{VENUE}/faults", {"burst_429": 1, "retry_after": 7})
    with pytest.raises(VenueRateLimited) as limited:
        kalshi.fetch_balances(creds)
    assert limited.value.retry_after == pytest.approx(7, abs=1)
    assert kalshi.egress.limiter(VENUE).blocked_for() > 5  # the shared budget now waits as told


def test_requests_carry_the_key_id_and_nothing_else(sim: RunningSim, kalshi: KalshiAdapter) -> None:
    key = sim.create_key(VENUE, ["read"], history={"fills": 5, "settlements": 2, "positions": 3})
    creds = creds_of(key)
    sim.control("DELETE", "requests")
    kalshi.probe_scope(creds)
    kalshi.fetch_balances(creds)
    kalshi.fetch_positions(creds)
    for stream in kalshi.streams:
        drain(lambda s, c: kalshi.fetch_transactions(creds, s, c), stream)
    log = sim.requests_log(VENUE)
    assert log
    for entry in log:
        assert entry["method"] == "GET" and entry["body"] == ""
        assert set(parse_qs(entry["query"])) <= {"limit", "cursor", "min_ts", "count_filter"}
        headers = {k.lower(): v for k, v in entry["headers"].items()}
        assert not set(headers) & {"cookie", "authorization", "x-forwarded-for", "from"}
        if "kalshi-access-key" in headers:
            assert headers["kalshi-access-key"] == key["api_key"]
            assert entry["auth"] == "verified"
        else:  # market, event and series data is public and fetched unsigned
            assert entry["path"].split("/")[3] in ("markets", "events", "series")
        assert key["api_secret"] not in repr(entry)
