"""Coinbase traps, with real ccxt against the simulator: CDP JWTs sign the production host and path
(never the query), last 120 s, may come from the official SDK (``iss: cdp``, no ``aud``); load_markets
must stay public (ccxt's signed transaction_summary); deposits and withdrawals are v2 ``send``
transactions read wallet by wallet; fills page by cursor inside a pinned window.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from decimal import Decimal
from typing import Any

import ccxt
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from appliance.errors import EgressRefused, VenuePermissionError
from appliance.venues.exchanges.coinbase import CoinbaseAdapter
from appliance.venues.registry import VenueRegistry
from appliance.venues.scope_policy import decide
from tests.support.sim import RunningSim
from tests.venues.helpers import creds_of, pages

VENUE = "coinbase"
EMPTY = {"trades": 0, "deposits": 0, "withdrawals": 0}
PERMISSIONS_PATH = "/api/v3/brokerage/key_permissions"


def adapter_of(registry: VenueRegistry) -> CoinbaseAdapter:
    adapter = registry.get(VENUE)
    assert isinstance(adapter, CoinbaseAdapter)
    return adapter




def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = token.split(".")
    return (json.loads(base64.urlsafe_b64decode(head + "==")), json.loads(base64.urlsafe_b64decode(body + "==")))


def sdk_token(key: dict[str, Any], uri: str, now: int) -> str:
    """A JWT the way Coinbase's own SDK builds it: iss "cdp", no aud."""
    private = serialization.load_pem_private_key(key["api_secret"].encode(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    header = {"alg": "ES256", "typ": "JWT", "kid": key["api_key"], "nonce": secrets.token_hex(16)}
    claims = {"sub": key["api_key"], "iss": "cdp", "nbf": now, "exp": now + 120, "uri": uri}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def get(sim: RunningSim, path: str, token: str) -> requests.Response:
    return requests.get(f"{sim.base_url(VENUE)}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=5)


def test_jwt_signs_the_production_uri_and_is_bound_to_it(sim: RunningSim, registry: VenueRegistry) -> None:
    key = sim.create_key(VENUE)
    sim.control("DELETE", "requests")
    adapter_of(registry).probe_scope(creds_of(key))
    (entry,) = [e for e in sim.requests_log(VENUE) if e["path"] == PERMISSIONS_PATH]
    token = entry["headers"]["Authorization"].removeprefix("Bearer ")
    header, claims = claims_of(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == claims["sub"] == key["api_key"]
    assert claims["uri"] == f"GET api.coinbase.com{PERMISSIONS_PATH}"
    assert claims["exp"] - claims["nbf"] == 120
    assert get(sim, "/api/v3/brokerage/accounts", token).status_code == 401  # replayed on another path
    response = get(sim, PERMISSIONS_PATH, token)
    assert response.status_code == 200


def test_official_sdk_claims_are_accepted(sim: RunningSim) -> None:
    key = sim.create_key(VENUE)
    now = int(time.time())
    response = get(sim, PERMISSIONS_PATH, sdk_token(key, f"GET api.coinbase.com{PERMISSIONS_PATH}", now))
    assert response.json()["can_view"] is True


@pytest.mark.parametrize("case", ["expired", "future", "loopback_uri", "other_key"])
def test_stale_or_misbound_jwt_is_refused(sim: RunningSim, case: str) -> None:
    key, other = sim.create_key(VENUE), sim.create_key(VENUE)
    now = int(time.time())
    uri = f"GET api.coinbase.com{PERMISSIONS_PATH}"
    token = {
        "expired": lambda: sdk_token(key, uri, now - 600),
        "future": lambda: sdk_token(key, uri, now + 600),
        # what ccxt signs when its base URL is pointed at a loopback address (VENUES.md §0.2)
        "loopback_uri": lambda: sdk_token(key, f"GET http://127.0.0.1{PERMISSIONS_PATH}", now),
        "other_key": lambda: sdk_token({"api_key": key["api_key"], "api_secret": other["api_secret"]}, uri, now),
    }[case]()
    response = get(sim, PERMISSIONS_PATH, token)
    assert response.status_code == 401
    # Advanced Trade's documented error: the gRPC gateway status (docs/VENUES-SOURCES.md, Coinbase).
    assert response.json() == {"error": "UNAUTHENTICATED", "code": 16, "message": "Unauthorized", "details": []}


def test_markets_stay_public_and_transaction_summary_is_refused(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    sim.control("DELETE", "requests")
    public = adapter.new_client(None)
    adapter.call(public.load_markets, creds=None)  # what markets() does once per process
    assert {(e["method"], e["path"]) for e in sim.requests_log(VENUE)} == {("GET", "/api/v3/brokerage/market/products")}
    assert "BTC/USDT" in public.markets
    key = sim.create_key(VENUE)
    with pytest.raises(EgressRefused):  # a credentialed load_markets would sign transaction_summary
        adapter.new_client(creds_of(key)).load_markets()


def test_view_less_key_is_permission_denied(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE, ["trade"])
    scope = adapter.probe_scope(creds_of(key))
    assert scope.read is False
    assert scope.trade is True
    assert "Trade" in decide(adapter, scope, "reject").message
    with pytest.raises(VenuePermissionError) as caught:
        adapter.fetch_balances(creds_of(key))
    assert caught.value.venue_code == "PERMISSION_DENIED"


def test_scope_evidence_names_the_portfolio_not_the_key(sim: RunningSim, registry: VenueRegistry) -> None:
    key = sim.create_key(VENUE, ["read", "withdraw"])
    scope = adapter_of(registry).probe_scope(creds_of(key))
    assert scope.transfer is True
    assert scope.withdraw is True
    assert scope.evidence["portfolio_uuid"]
    assert key["api_key"] not in repr(scope.as_dict())
    assert "PRIVATE KEY" not in repr(scope.as_dict())


def test_fills_page_by_cursor_inside_a_pinned_window(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE, history={"trades": 600, "deposits": 0, "withdrawals": 0})
    sim.control("DELETE", "requests")
    walked = pages(adapter, creds_of(key), "trades")
    ids = [r.venue_tx_id for p in walked for r in p.records]
    assert len(ids) == len(set(ids)) == 600
    queries = [e["query"] for e in sim.requests_log(VENUE) if e["path"].endswith("/historical/fills")]
    assert len(queries) == 3
    assert "cursor=" not in queries[0]
    assert all("cursor=" in q for q in queries[1:])
    assert len({q.split("end_sequence_timestamp=")[1].split("&")[0] for q in queries}) == 1
    newest = max((p.records[0].raw or {})["sequence_timestamp"] for p in walked if p.records)
    assert walked[-1].cursor == {"since": newest}


def test_funding_comes_from_v2_transactions_wallet_by_wallet(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE, history=EMPTY)
    path = f"{VENUE}/keys/{key['api_key']}"
    sim.control("POST", f"{path}/deposits", {"deposits": [{"asset": "BTC", "amount": "0.00000001"}] * 130
                                             + [{"asset": "USD", "amount": "250.5"}]})
    sim.control("POST", f"{path}/withdrawals", {"withdrawals": [{"asset": "BTC", "amount": "0.1", "fee": "0.0005"}]})
    sim.control("POST", f"{path}/trades", {"count": 20})  # advanced_trade_fill entries in the same wallets
    sim.control("DELETE", "requests")
    walked = pages(adapter, creds_of(key), "deposits")
    assert all(json.loads(json.dumps(p.cursor)) == p.cursor for p in walked)  # stored as JSON between pages
    deposits = [r for p in walked for r in p.records]
    assert len(deposits) == 131
    assert {r.asset for r in deposits} == {"BTC", "USD"}
    v2 = [e["query"] for e in sim.requests_log(VENUE) if e["path"].startswith("/v2/")]
    assert all("order=asc" in q for q in v2)
    assert any("starting_after=" in q for q in v2)  # the BTC wallet took more than one page of 100
    (withdrawal,) = [r for p in pages(adapter, creds_of(key), "withdrawals") for r in p.records]
    assert withdrawal.amount == Decimal("0.1")  # sent; the wallet was debited 0.1005 with the fee
    assert withdrawal.fee_amount == Decimal("0.0005")
    assert withdrawal.raw is not None
    assert withdrawal.raw["amount"]["amount"] == "-0.1005"


def test_ccxt_withdraw_is_refused_on_its_first_request(sim: RunningSim, registry: VenueRegistry) -> None:
    key = sim.create_key(VENUE, ["read", "transfer"])
    client = adapter_of(registry).client(creds_of(key))
    sim.control("DELETE", "requests")
    with pytest.raises(EgressRefused, match="/v2/accounts"):  # ccxt looks up the wallet first
        client.withdraw("BTC", 1, "bc1qexampleaddressxxxxxxxxxxxxxxxxxxxxxxxx")
    with pytest.raises(EgressRefused):
        client.v2PrivatePostAccountsAccountIdTransactions({"account_id": "0" * 36, "type": "send"})
    assert sim.requests_log(VENUE) == []
    assert isinstance(client, ccxt.coinbase)


def test_guide_and_fields(registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    warnings = " ".join(step.text for step in adapter.guide if step.warning)
    assert "View only" in warnings
    assert "Trade and Transfer unticked" in warnings
    secret_field = next(f for f in adapter.credential_fields if f.name == "api_secret")
    assert secret_field.multiline
    assert "organizations/" in adapter.credential_fields[0].help
