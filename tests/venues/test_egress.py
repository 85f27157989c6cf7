"""The egress layer: every host the appliance may contact, and what it refuses before anything leaves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from appliance.cli.main import cli
from appliance.errors import EgressRefused
from appliance.settings import settings_from_mapping
from appliance.venues.egress import Egress, read
from tests.support.sim import RunningSim


def test_egress_lists_every_host(tmp_path: Path) -> None:
    config = tmp_path / "v.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "venues": {"bitstamp": {"enabled": False}, "okx": {"base_url": "https://egress-gw.corp.example/okx"}},
        "chains": {"evm": {"ethereum": {"rpc_url": "https://eth-node.corp.example:8545/rpc"},
                           "polygon": {"rpc_url": "https://polygon.provider.example/v3/x", "chain_id": 137}},
                   "bitcoin": {"enabled": True, "esplora_url": "https://esplora.corp.example/api"}},
        "egress": {"proxy": "http://proxy.corp.example:3128"},
    }))
    result = CliRunner().invoke(cli, ["--config", str(config), "egress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    hosts = {line.split()[0] for line in result.output.splitlines() if not line.startswith("#")}
    for host in ("api.binance.com", "api.binance.us", "api.coinbase.com", "api.kraken.com", "api.gemini.com",
                 "api.bybit.com", "api.kucoin.com", "egress-gw.corp.example", "data-api.polymarket.com",
                 "gamma-api.polymarket.com", "api.elections.kalshi.com", "eth-node.corp.example",
                 "polygon.provider.example", "esplora.corp.example"):
        assert any(h == host or h.startswith(host) for h in hosts), f"{host} missing from {sorted(hosts)}"
    assert "www.bitstamp.net" not in hosts  # disabled venues are not contacted
    assert "www.okx.com" not in hosts  # replaced by the gateway
    assert "proxy.corp.example:3128" in result.output


def test_unlisted_host_and_write_endpoint_refused_before_leaving(sim: RunningSim) -> None:
    settings = settings_from_mapping({"venues": {"kraken": {"base_url": sim.base_url("kraken")}}})
    egress = Egress(settings)
    session = egress.session("kraken", ("api.kraken.com",), read("POST", r"/0/private/Balance"))
    sim.control("DELETE", "requests")
    with pytest.raises(EgressRefused, match="not on the egress allowlist"):
        session.request("POST", "https://attacker.example/0/private/Balance")
    with pytest.raises(EgressRefused, match="read-only allowlist"):
        session.request("POST", "https://api.kraken.com/0/private/AddOrder", data=b"nonce=1")
    with pytest.raises(EgressRefused, match="read-only allowlist"):
        session.request("POST", "https://api.kraken.com/0/private/Withdraw", data=b"nonce=1")
    assert sim.requests_log("kraken") == []


def test_rewrite_keeps_path_and_query_and_sends_a_neutral_user_agent(sim: RunningSim) -> None:
    settings = settings_from_mapping({"venues": {"binance": {"base_url": sim.base_url("binance")}}})
    session = Egress(settings).session("binance", ("api.binance.com",), read("GET", r"/api/v3/exchangeInfo"))
    sim.control("DELETE", "requests")
    response: Any = session.request("GET", "https://api.binance.com/api/v3/exchangeInfo?symbol=BTCUSDT",
                                    headers={"User-Agent": "python-ccxt/4.5 (employee laptop)"})
    assert response.status_code == 200
    logged = sim.requests_log("binance")[-1]
    assert logged["path"] == "/api/v3/exchangeInfo"
    assert logged["query"] == "symbol=BTCUSDT"
    agent = {k.lower(): v for k, v in logged["headers"].items()}["user-agent"]
    assert agent == settings.egress.user_agent
    assert "ccxt" not in agent


def test_rate_limit_blocks_the_whole_venue(sim: RunningSim) -> None:
    settings = settings_from_mapping({"venues": {"binance": {"base_url": sim.base_url("binance")}}})
    egress = Egress(settings)
    session = egress.session("binance", ("api.binance.com",), read("GET", r"/api/v3/exchangeInfo"))
    # Another account's session of the venue: every ccxt client gets its own VenueSession
    # (see new_client), built the same way.
    other = egress.session("binance", ("api.binance.com",), read("GET", r"/api/v3/exchangeInfo"))
    assert other is not session
    sim.control("POST", "binance/faults", {"burst_429": 1, "retry_after": 3})
    try:
        assert session.request("GET", "https://api.binance.com/api/v3/exchangeInfo").status_code == 429
        assert egress.limiter("binance").blocked_for() > 2
        # The other session shares the venue limiter: its request waits for the first one's retry-after
        # before it leaves (the fault is a single 429, so it then gets through).
        started = time.monotonic()
        assert other.request("GET", "https://api.binance.com/api/v3/exchangeInfo").status_code == 200
        assert time.monotonic() - started > 2
    finally:
        sim.clear_faults()
