"""The EVM adapter against a real anvil: contracts deployed and transactions sent by the test (from
anvil's unlocked accounts), read back by the adapter through the egress layer with read-only
JSON-RPC. Reorgs are made with evm_snapshot / evm_revert; provider range limits with a loopback
proxy that refuses wide eth_getLogs ranges."""

from __future__ import annotations

import itertools
import json
import secrets
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from appliance.errors import EgressRefused, VenueBadData, VenueTransient
from appliance.venues.base import Kind, TxRecord
from appliance.venues.chains.addresses import evm_checksum
from appliance.venues.chains.evm import ALLOWED_METHODS, LIMITATION, TRANSFER_TOPIC, EvmAdapter
from tests.chains.conftest import drain, evm_adapter
from tests.support.anvil import Anvil, call_data


def fresh_address() -> str:
    return evm_checksum("0x" + secrets.token_hex(20))


def deploy_token(node: Anvil, symbol: str, decimals: int) -> str:
    return evm_checksum(node.deploy("TestToken", ["string", "string", "uint8"], [f"{symbol} token", symbol, decimals]))


def expected_legs(receipts: list[dict[str, Any]], owner: str) -> set[tuple[str, str, str]]:
    """(venue_tx_id, kind, raw value or token id) of every Transfer log touching ``owner``."""
    padded = "0x" + "0" * 24 + owner[2:].lower()
    legs = set()
    for receipt in receipts:
        for log in receipt["logs"]:
            topics = log["topics"]
            if topics[0] != TRANSFER_TOPIC or padded not in topics[1:3]:
                continue
            base = f"{log['transactionHash']}:{int(log['logIndex'], 16)}"
            value = str(int(topics[3], 16)) if len(topics) == 4 else str(int(log["data"], 16))
            both = topics[1] == topics[2] == padded
            if topics[2] == padded:
                legs.add((base + (":in" if both else ""), Kind.TRANSFER_IN.value, value))
            if topics[1] == padded:
                legs.add((base + (":out" if both else ""), Kind.TRANSFER_OUT.value, value))
    return legs


def legs_of(records: list[TxRecord]) -> set[tuple[str, str, str]]:
    assert records and all(r.raw is not None for r in records)
    return {(r.venue_tx_id, r.kind, str((r.raw or {}).get("token_id") or (r.raw or {}).get("value")))
            for r in records}


def test_balances_are_exact(anvil: Anvil) -> None:
    a0 = anvil.accounts[0]
    owner = fresh_address()
    usd = deploy_token(anvil, "TUSD", 6)
    big = deploy_token(anvil, "BIG", 18)
    anvil.send(a0, usd, call_data("mint(address,uint256)", owner, 1_234_567_891))
    anvil.send(a0, big, call_data("mint(address,uint256)", owner, 123_456_789_012_345_678_901_234_567))
    anvil.send(a0, owner, value=1_234_567_890_123_456_789)
    adapter = evm_adapter(anvil.url, tokens=[usd, big.lower(), deploy_token(anvil, "ZERO", 2)])
    balances = {(b.asset, b.account): b.amount for b in adapter.fetch_balances(owner.lower())}
    assert balances == {
        ("ETH", ""): Decimal("1.234567890123456789"),
        ("TUSD", usd): Decimal("1234.567891"),
        ("BIG", big): Decimal("123456789.012345678901234567"),  # 27 digits: beyond Decimal's default precision
    }


def test_transfers_equal_what_the_test_created_and_a_second_sync_adds_nothing(anvil: Anvil) -> None:
    a0, owner, other = anvil.accounts[0], anvil.accounts[1], anvil.accounts[2]
    usd = deploy_token(anvil, "TUSD", 6)
    nft = evm_checksum(anvil.deploy("TestNFT"))
    receipts = [
        anvil.send(a0, usd, call_data("mint(address,uint256)", owner, 5_000_000_000)),
        anvil.send(owner, usd, call_data("transfer(address,uint256)", other, 1_000_001)),
        anvil.send(other, usd, call_data("transfer(address,uint256)", owner, 1)),
        anvil.send(owner, usd, call_data("transfer(address,uint256)", owner, 42)),  # to itself: both legs
        anvil.send(a0, usd, call_data("mint(address,uint256)", other, 7)),  # not ours
        anvil.send(a0, nft, call_data("mint(address,uint256)", owner, 42)),
        anvil.send(owner, nft, call_data("transferFrom(address,address,uint256)", owner, other, 42)),
    ]
    adapter = evm_adapter(anvil.url)
    records, pages = drain(adapter, owner)
    assert legs_of(records) == expected_legs(receipts, owner)
    by_id = {r.venue_tx_id: r for r in records}
    out = by_id[f"{receipts[1]['transactionHash']}:{int(receipts[1]['logs'][0]['logIndex'], 16)}"]
    assert (out.kind, out.asset, out.amount, out.market) == (Kind.TRANSFER_OUT, "TUSD", Decimal("1.000001"), usd)
    assert out.block_number == int(receipts[1]["blockNumber"], 16) and out.block_hash == receipts[1]["blockHash"]
    block = anvil.rpc("eth_getBlockByNumber", receipts[1]["blockNumber"], False)
    assert out.occurred_at.timestamp() == int(block["timestamp"], 16)
    nft_in = [r for r in records if r.asset == "TNFT#42"]
    assert sorted(r.kind for r in nft_in) == [Kind.TRANSFER_IN, Kind.TRANSFER_OUT]
    assert all(r.amount == Decimal(1) for r in nft_in)
    assert all(p.notes["limitations"] == LIMITATION for p in pages)
    tip = anvil.rpc("eth_getBlockByNumber", hex(anvil.block_number()), False)
    assert pages[-1].complete_until is not None
    assert pages[-1].complete_until.timestamp() == int(tip["timestamp"], 16)

    again, second = drain(adapter, owner, pages[-1].cursor)
    assert again == [] and second[-1].done
    anvil.mine(5)  # new empty blocks: scanned, still nothing new
    assert drain(adapter, owner, second[-1].cursor)[0] == []


def test_confirmations_hold_back_recent_blocks(anvil: Anvil) -> None:
    a0 = anvil.accounts[0]
    owner = fresh_address()
    usd = deploy_token(anvil, "TUSD", 6)
    receipt = anvil.send(a0, usd, call_data("mint(address,uint256)", owner, 10))
    mined_at = int(receipt["blockNumber"], 16)
    adapter = evm_adapter(anvil.url, confirmations=3)
    records, pages = drain(adapter, owner)
    assert records == []
    assert pages[-1].cursor["next_block"] == anvil.block_number() - 3 + 1  # never past tip - confirmations
    anvil.mine(2)
    records, pages = drain(adapter, owner, pages[-1].cursor)
    assert records == [] and pages[-1].cursor["next_block"] == mined_at  # one confirmation short
    anvil.mine(1)
    records, pages = drain(adapter, owner, pages[-1].cursor)
    assert [r.block_number for r in records] == [mined_at]
    final = anvil.rpc("eth_getBlockByNumber", hex(mined_at), False)
    assert pages[-1].complete_until is not None
    assert pages[-1].complete_until.timestamp() == int(final["timestamp"], 16)


def test_a_reorg_is_detected_reported_and_rescanned(anvil: Anvil) -> None:
    a0, owner = anvil.accounts[0], anvil.accounts[3]
    usd = deploy_token(anvil, "TUSD", 6)
    first = anvil.send(a0, usd, call_data("mint(address,uint256)", owner, 1_000))
    snapshot = anvil.snapshot()
    orphan = anvil.send(owner, usd, call_data("transfer(address,uint256)", anvil.accounts[4], 100))
    adapter = evm_adapter(anvil.url)
    records, pages = drain(adapter, owner)
    assert {r.block_hash for r in records} == {first["blockHash"], orphan["blockHash"]}

    anvil.revert(snapshot)  # the orphan's block leaves the chain...
    replacement = anvil.send(owner, usd, call_data("transfer(address,uint256)", anvil.accounts[5], 250))
    anvil.mine(2)  # ...and a longer, different chain replaces it
    assert replacement["blockNumber"] == orphan["blockNumber"] and replacement["blockHash"] != orphan["blockHash"]
    records, pages = drain(adapter, owner, pages[-1].cursor)
    notes = pages[0].notes
    assert notes["orphaned_from_block"] == int(orphan["blockNumber"], 16)
    assert orphan["blockHash"] in notes["orphaned_block_hashes"]
    assert first["blockHash"] not in notes["orphaned_block_hashes"]
    assert [(r.block_hash, r.amount, r.kind) for r in records] == [
        (replacement["blockHash"], Decimal("0.00025"), Kind.TRANSFER_OUT)]
    assert drain(adapter, owner, pages[-1].cursor)[0] == []


class RangeLimitProxy:
    """A loopback JSON-RPC proxy in front of anvil that refuses eth_getLogs over more than ``limit``
    blocks, the way hosted providers do, and remembers every range it was asked for."""

    def __init__(self, upstream: str, limit: int) -> None:
        self.upstream, self.limit = upstream, limit
        self.ranges: list[tuple[int, int, bool]] = []
        self.methods: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                proxy.methods.append(body["method"])
                answer: Any
                if body["method"] == "eth_getLogs":
                    query = body["params"][0]
                    start, end = int(query["fromBlock"], 16), int(query["toBlock"], 16)
                    refused = end - start + 1 > proxy.limit
                    proxy.ranges.append((start, end, refused))
                    if refused:
                        answer = {"jsonrpc": "2.0", "id": body["id"], "error": {
                            "code": -32000, "message": f"exceed maximum block range: {proxy.limit}"}}
                        return self.reply(answer)
                upstream = requests.post(proxy.upstream, json=body, timeout=10)
                self.reply(upstream.json())

            def reply(self, answer: Any) -> None:
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rpc/v1/secret-key"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def limited(anvil: Anvil) -> Iterator[RangeLimitProxy]:
    proxy = RangeLimitProxy(anvil.url, limit=4)
    yield proxy
    proxy.close()


def test_the_block_range_shrinks_when_the_node_refuses(anvil: Anvil, limited: RangeLimitProxy) -> None:
    a0, owner = anvil.accounts[0], fresh_address()
    usd = deploy_token(anvil, "TUSD", 6)
    receipts = []
    for value in range(1, 8):
        receipts.append(anvil.send(a0, usd, call_data("mint(address,uint256)", owner, value)))
        anvil.mine(3)
    adapter = evm_adapter(limited.url, max_block_range=64)
    records, pages = drain(adapter, owner)
    assert legs_of(records) == expected_legs(receipts, owner)
    refused = [r for r in limited.ranges if r[2]]
    served = [r for r in limited.ranges if not r[2]]
    assert refused[0] == (0, anvil.block_number(), True)  # the first try spans everything (< 64 blocks)
    assert all(end - start + 1 <= 4 for start, end, _ in served)
    # the ranges served cover every block exactly once per direction, with no gap
    covered = sorted({(s, e) for s, e, _ in served})
    assert covered[0][0] == 0 and covered[-1][1] == anvil.block_number()
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(covered))
    assert any("block_range" in p.notes for p in pages)
    assert "range" not in pages[-1].cursor  # the next run starts at max_block_range again


def test_a_node_of_another_chain_is_refused(anvil: Anvil) -> None:
    adapter = evm_adapter(anvil.url, chain_id=1)
    owner = anvil.accounts[0]
    for call in (lambda: adapter.fetch_balances(owner), lambda: adapter.fetch_transactions(owner, "transfers", {})):
        with pytest.raises(VenueBadData, match=r"serves chain id 31337.*chain_id is 1") as caught:
            call()
        assert caught.value.venue_code == "wrong_chain"


def test_methods_outside_the_allowlist_never_leave_the_box(anvil: Anvil, limited: RangeLimitProxy) -> None:
    adapter: EvmAdapter = evm_adapter(limited.url)
    a0 = anvil.accounts[0]
    for method, params in [("eth_sendTransaction", [{"from": a0, "to": a0, "value": "0x1"}]),
                           ("eth_sendRawTransaction", ["0x00"]), ("personal_unlockAccount", [a0, "", 60]),
                           ("anvil_setBalance", [a0, "0x0"]), ("debug_traceTransaction", ["0x" + "0" * 64])]:
        with pytest.raises(EgressRefused, match=f"{method} is not on the read-only allowlist"):
            adapter.rpc.call(method, params)
    assert limited.methods == []  # refused locally: nothing reached the node
    assert {"eth_chainId", "eth_blockNumber", "eth_getBalance", "eth_call", "eth_getLogs",
                               "eth_getBlockByNumber"} == ALLOWED_METHODS
    with pytest.raises(EgressRefused, match="not on the read-only allowlist"):
        adapter.rpc.session.get(limited.url)  # only POST to the configured path
    with pytest.raises(EgressRefused, match="not on the read-only allowlist"):
        adapter.rpc.session.post(limited.url.replace("secret-key", "other"), json={})
    adapter.fetch_balances(a0)
    assert set(limited.methods) <= ALLOWED_METHODS


def test_errors_never_show_the_endpoint_url() -> None:
    adapter = evm_adapter("http://127.0.0.1:9/v3/provider-key-abc")  # nothing listens on the discard port
    with pytest.raises(VenueTransient) as caught:
        adapter.fetch_balances(fresh_address())
    assert "provider-key-abc" not in str(caught.value) and "127.0.0.1" not in str(caught.value)
