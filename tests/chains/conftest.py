"""Fixtures for the chain adapters: a real anvil per test (tests/support/anvil.py) for EVM, and the
session's simulators (Esplora under /esplora/api) for Bitcoin."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from coincurve import PrivateKey

from appliance.settings import settings_from_mapping
from appliance.venues.base import Page, TxRecord
from appliance.venues.chains.addresses import b58check_encode
from appliance.venues.chains.bitcoin import BitcoinAdapter
from appliance.venues.chains.evm import EvmAdapter
from appliance.venues.egress import Egress
from tests.support.anvil import anvil  # noqa: F401  (the fixture)
from tests.support.sim import RunningSim

CHAIN = "anvil"
ANVIL_CHAIN_ID = 31337


def evm_adapter(rpc_url: str, **chain: Any) -> EvmAdapter:
    config = {"rpc_url": rpc_url, "chain_id": ANVIL_CHAIN_ID, "confirmations": 0, "requests_per_second": 1000,
              **chain}
    settings = settings_from_mapping({"data_dir": "/nonexistent/vigatra", "egress": {"timeout_seconds": 5},
                                      "chains": {"evm": {CHAIN: config}}})
    return EvmAdapter(Egress(settings), CHAIN, settings.chains.evm[CHAIN])


def bitcoin_adapter(sim: RunningSim, **overrides: Any) -> BitcoinAdapter:
    config = {"enabled": True, "esplora_url": f"{sim.url}/esplora/api", "requests_per_second": 1000, **overrides}
    settings = settings_from_mapping({"data_dir": "/nonexistent/vigatra", "egress": {"timeout_seconds": 5},
                                      "chains": {"bitcoin": config}})
    return BitcoinAdapter(Egress(settings), settings.chains.bitcoin)


def drain(adapter: Any, address: str, cursor: dict[str, Any] | None = None, max_pages: int = 500
          ) -> tuple[list[TxRecord], list[Page]]:
    """Every page of one sync run: call until ``done``, like the sync engine."""
    records: list[TxRecord] = []
    pages: list[Page] = []
    current: dict[str, Any] = dict(cursor or {})
    for _ in range(max_pages):
        page = adapter.fetch_transactions(address, "transfers", current)
        pages.append(page)
        records.extend(page.records)
        current = dict(page.cursor)
        if page.done:
            return records, pages
    raise AssertionError(f"no end after {max_pages} pages")


ZPUB, TPUB, VPUB = 0x04B24746, 0x043587CF, 0x045F1CEB


def fresh_xpub(version: int = ZPUB) -> str:
    """A random account-level extended public key, so each test has a wallet of its own in the
    session-wide simulator."""
    public_key = PrivateKey().public_key.format(compressed=True)
    payload = (version.to_bytes(4, "big") + bytes([3]) + secrets.token_bytes(4) + (0x80000000).to_bytes(4, "big")
               + secrets.token_bytes(32) + public_key)
    return b58check_encode(payload)


@pytest.fixture(autouse=True)
def _fresh_token_metadata() -> Iterator[None]:
    """Every test's anvil deploys contracts at the same addresses on the same chain id; in production
    that means the same contract, so the process-wide decimals/symbol cache must not leak between tests."""
    from appliance.venues.chains import evm

    evm._TOKEN_META.clear()
    yield
    evm._TOKEN_META.clear()


@pytest.fixture
def esplora(sim: RunningSim) -> Iterator[RunningSim]:
    yield sim
    sim.control("DELETE", "esplora/faults")
