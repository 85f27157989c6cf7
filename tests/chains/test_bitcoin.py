"""The Bitcoin adapter against the Esplora simulator: balances and history equal what the simulator
holds, pagination is complete, a second sync adds nothing, an xpub wallet discovers exactly the used
addresses within the gap limit, and addresses of another network are refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from appliance.errors import Invalid, VenueRateLimited, VenueTransient
from appliance.venues.base import Balance, Kind
from appliance.venues.chains.addresses import segwit_encode, validate_bitcoin
from tests.chains.conftest import VPUB, bitcoin_adapter, drain, fresh_xpub
from tests.support.sim import RunningSim

SATS = Decimal(100_000_000)


def fresh_address() -> str:
    import secrets

    return segwit_encode("bc", 0, secrets.token_bytes(20))


def ledger(sim: RunningSim, address: str) -> dict[str, object]:
    return dict(sim.control("GET", f"esplora/addresses/{address}"))


def add(sim: RunningSim, address: str, **body: object) -> list[str]:
    return list(sim.control("POST", f"esplora/addresses/{address}/txs", body)["txids"])


def test_the_simulator_speaks_esplora(esplora: RunningSim) -> None:
    base = f"{esplora.url}/esplora/api"
    height = requests.get(f"{base}/blocks/tip/height", timeout=5)
    assert height.headers["Content-Type"].startswith("text/plain") and height.text.isdigit()
    address = fresh_address()
    txid = add(esplora, address, count=1)[0]
    stats = requests.get(f"{base}/address/{address}", timeout=5).json()
    assert set(stats) == {"address", "chain_stats", "mempool_stats"}
    assert stats["chain_stats"]["tx_count"] == 1 and stats["mempool_stats"]["tx_count"] == 0
    tx = requests.get(f"{base}/tx/{txid}", timeout=5).json()
    assert tx["status"]["confirmed"] and tx["status"]["block_height"] == int(height.text) + 1
    block_hash = requests.get(f"{base}/block-height/{tx['status']['block_height']}", timeout=5).text
    assert block_hash == tx["status"]["block_hash"]
    assert requests.get(f"{base}/address/not!valid", timeout=5).text == "Invalid Bitcoin address"
    missing = requests.get(f"{base}/tx/{'0' * 64}", timeout=5)
    assert (missing.status_code, missing.text) == (404, "Transaction not found")


def test_balance_and_history_equal_the_simulator(esplora: RunningSim) -> None:
    address = fresh_address()
    add(esplora, address, txs=[{"receive": 150_000_000}, {"receive": 2_345}, {"send": 50_000_001, "fee": 777},
                               {"receive": 1}])
    truth = ledger(esplora, address)
    adapter = bitcoin_adapter(esplora)
    assert adapter.fetch_balances(address) == [Balance("BTC", Decimal("1.00001568"))]
    assert truth["balance_sats"] == 150_000_000 + 2_345 - 50_000_001 - 777 + 1
    records, pages = drain(adapter, address)
    assert [r.venue_tx_id for r in sorted(records, key=lambda r: r.block_number or 0)] == truth["confirmed_txids"]
    kinds = [(r.kind, r.amount, r.fee_amount) for r in sorted(records, key=lambda r: r.block_number or 0)]
    assert kinds == [(Kind.TRANSFER_IN, Decimal("1.50000000"), None), (Kind.TRANSFER_IN, Decimal("0.00002345"), None),
                     (Kind.TRANSFER_OUT, Decimal("0.50000001"), Decimal("0.00000777")),
                     (Kind.TRANSFER_IN, Decimal("0.00000001"), None)]
    inflow = sum((r.amount for r in records if r.kind == Kind.TRANSFER_IN), Decimal(0))
    outflow = sum((r.amount + (r.fee_amount or 0) for r in records if r.kind == Kind.TRANSFER_OUT), Decimal(0))
    assert inflow - outflow == adapter.fetch_balances(address)[0].amount  # balance matches the transfers
    for record in records:
        tx = requests.get(f"{esplora.url}/esplora/api/tx/{record.venue_tx_id}", timeout=5).json()
        assert record.block_hash == tx["status"]["block_hash"] and record.block_number == tx["status"]["block_height"]
        assert record.occurred_at.timestamp() == tx["status"]["block_time"]
    assert pages[-1].complete_until is not None


def test_multi_page_history_is_complete_and_a_second_sync_adds_nothing(esplora: RunningSim) -> None:
    address = fresh_address()
    add(esplora, address, count=61)
    add(esplora, address, count=7, same_block=True)  # several of ours in one block
    adapter = bitcoin_adapter(esplora)
    esplora.control("DELETE", "requests")
    records, pages = drain(adapter, address)
    truth = ledger(esplora, address)
    assert sorted(r.venue_tx_id for r in records) == sorted(truth["confirmed_txids"])  # type: ignore[arg-type]
    assert len(records) == 68 == len({r.venue_tx_id for r in records})
    paths = [e["path"] for e in esplora.requests_log("esplora") if "/txs" in e["path"]]
    assert paths[0] == f"/api/address/{address}/txs" and len(paths) == 3
    assert all(p.startswith(f"/api/address/{address}/txs/chain/") for p in paths[1:])

    again, second = drain(adapter, address, pages[-1].cursor)
    assert again == []
    new = add(esplora, address, count=1)
    third, _ = drain(adapter, address, second[-1].cursor)
    assert [r.venue_tx_id for r in third] == new


def test_unconfirmed_transactions_wait_for_a_block(esplora: RunningSim) -> None:
    address = fresh_address()
    add(esplora, address, count=2)
    pending = add(esplora, address, count=1, confirmed=False)
    adapter = bitcoin_adapter(esplora)
    records, pages = drain(adapter, address)
    assert len(records) == 2 and pending[0] not in {r.venue_tx_id for r in records}
    assert pages[0].notes["unconfirmed"] == 1
    assert adapter.fetch_balances(address)[0].amount * SATS == ledger(esplora, address)["balance_sats"]
    esplora.control("POST", "esplora/mine", {"blocks": 1})
    records, _ = drain(adapter, address, pages[-1].cursor)
    assert [r.venue_tx_id for r in records] == pending


def test_xpub_wallet_discovers_exactly_the_used_addresses(esplora: RunningSim) -> None:
    xpub = fresh_xpub()
    wallet = validate_bitcoin(xpub, "mainnet").xpub
    assert wallet is not None
    receive = {i: wallet.address(0, i) for i in range(20)}
    change = {i: wallet.address(1, i) for i in range(10)}
    for used in (receive[0], receive[1], receive[5], change[0]):
        add(esplora, used, count=2)
    beyond_gap = receive[12]  # 6 unused addresses (6..11) before it: past a gap limit of 5
    add(esplora, beyond_gap, count=1)
    adapter = bitcoin_adapter(esplora, gap_limit=5)
    esplora.control("DELETE", "requests")
    balance = adapter.fetch_balances(xpub)
    looked_up = {e["path"].rsplit("/", 1)[1] for e in esplora.requests_log("esplora") if "/address/" in e["path"]}
    assert looked_up == {receive[i] for i in range(11)} | {change[i] for i in range(6)}
    used = (receive[0], receive[1], receive[5], change[0])
    expected = sum(int(str(ledger(esplora, a)["balance_sats"])) for a in used)
    assert balance[0].amount * SATS == expected

    records, pages = drain(adapter, xpub)
    truth = set()
    for address in used:
        truth |= set(ledger(esplora, address)["confirmed_txids"])  # type: ignore[arg-type]
    assert {r.venue_tx_id for r in records} == truth and len(records) == 8
    assert pages[0].notes["addresses_used"] == 4
    assert pages[0].notes["addresses_scanned"] == {"receive": 11, "change": 6}
    assert drain(adapter, xpub, pages[-1].cursor)[0] == []


def test_xpub_change_is_not_a_transfer_and_fees_are_split_out(esplora: RunningSim) -> None:
    xpub = fresh_xpub()
    wallet = validate_bitcoin(xpub, "mainnet").xpub
    assert wallet is not None
    r0, r1, c0 = wallet.address(0, 0), wallet.address(0, 1), wallet.address(1, 0)
    add(esplora, r0, txs=[{"receive": 10_000_000}])
    adapter = bitcoin_adapter(esplora, gap_limit=3)
    _, pages = drain(adapter, xpub)
    spend = add(esplora, r0, txs=[{"send": 3_000_000, "fee": 1_000, "change": c0}])  # out, change to 1/0
    internal = add(esplora, c0, txs=[{"send": 2_000_000, "fee": 500, "to": r1, "change": c0}])  # wallet to itself
    records, _ = drain(adapter, xpub, pages[-1].cursor)
    by_id = {r.venue_tx_id: r for r in records}
    assert set(by_id) == {spend[0], internal[0]}  # each reported once, though it touches 2-3 wallet addresses
    assert (by_id[spend[0]].kind, by_id[spend[0]].amount, by_id[spend[0]].fee_amount) == (
        Kind.TRANSFER_OUT, Decimal("0.03000000"), Decimal("0.00001000"))
    assert (by_id[internal[0]].kind, by_id[internal[0]].amount, by_id[internal[0]].fee_amount) == (
        Kind.TRANSFER_OUT, Decimal("0E-8"), Decimal("0.00000500"))
    assert adapter.fetch_balances(xpub)[0].amount == Decimal("0.06998500")


def test_addresses_of_another_network_are_refused(esplora: RunningSim) -> None:
    mainnet = bitcoin_adapter(esplora)
    for wrong in ("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", fresh_xpub(VPUB)):
        with pytest.raises(Invalid, match="Wrong network"):
            mainnet.validate_address(wrong)
        with pytest.raises(Invalid, match="Wrong network"):
            mainnet.fetch_balances(wrong)
    testnet = bitcoin_adapter(esplora, network="testnet")
    assert testnet.validate_address("TB1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KXPJZSX") == (
        "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx")
    with pytest.raises(Invalid, match="Wrong network"):
        testnet.validate_address("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu")


def test_rate_limits_and_outages_are_classified(esplora: RunningSim) -> None:
    adapter = bitcoin_adapter(esplora)
    address = fresh_address()
    esplora.control("POST", "esplora/faults", {"burst_429": 1, "retry_after": 7})
    with pytest.raises(VenueRateLimited) as caught:
        adapter.fetch_balances(address)
    assert caught.value.retry_after == 7
    esplora.control("POST", "esplora/faults", {"fail_5xx": 1})
    adapter = bitcoin_adapter(esplora)  # a fresh limiter: the 429 blocked the old one for 7 s
    with pytest.raises(VenueTransient, match="HTTP 503"):
        adapter.fetch_balances(address)
    assert adapter.fetch_balances(address) == []


def test_only_the_read_paths_are_requested(esplora: RunningSim) -> None:
    address = fresh_address()
    add(esplora, address, count=30)
    adapter = bitcoin_adapter(esplora)
    esplora.control("DELETE", "requests")
    adapter.fetch_balances(address)
    drain(adapter, address)
    drain(adapter, fresh_xpub())
    import re

    allowed = re.compile(r"/api/(blocks/tip/hash|block/[0-9a-f]{64}|address/[a-z0-9]+(/txs(/chain/[0-9a-f]{64})?)?)")
    log = esplora.requests_log("esplora")
    assert log and all(e["method"] == "GET" and allowed.fullmatch(e["path"]) for e in log)
    assert all(e["query"] == "" and e["body"] == "" for e in log)
