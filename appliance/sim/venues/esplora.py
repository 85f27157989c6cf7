"""Esplora REST API (Blockstream esplora/electrs, mempool.space), served under ``/esplora/api/...``.

Keyless and public like the real thing. The simulated chain is a list of blocks holding transactions
with real inputs: a payment *from* an address spends that address's earlier outputs (so
``chain_stats`` funded/spent sums always add up), and a payment *to* it comes from an outside wallet.

Wire formats follow Esplora: ``/blocks/tip/height`` and ``/blocks/tip/hash`` as plain text;
``/address/:addr`` with ``chain_stats`` and ``mempool_stats``; ``/address/:addr/txs`` newest first with
up to 50 mempool transactions plus the first 25 confirmed ones, then ``/txs/chain/:last_seen_txid`` 25
per page (an unknown ``last_seen_txid`` gives an empty page, as electrs does); ``/tx/:txid``;
``/block-height/:h``; ``/block/:hash``; errors as short plain-text bodies (400 ``Invalid Bitcoin
address``, 404 ``Transaction not found``), 429 ``Too Many Requests`` with Retry-After. Not faithful:
``scriptpubkey`` hex and asm are left empty (the simulator keeps addresses, not scripts) and external
counterparties get random, checksum-less addresses.

Control API (under ``/_sim/esplora/``), used by tests and ``vigatra demo``:

- ``POST addresses/<addr>/txs`` ``{"count": n}`` n incoming payments, or ``{"txs": [{"receive": sats},
  {"send": sats, "to": addr?, "fee": sats?, "change": addr?}]}``; ``"confirmed": false`` leaves them in
  the mempool, ``"same_block": true`` mines them together. Answers ``{"txids": [...]}``.
- ``GET addresses/<addr>`` ground truth: confirmed balance, mempool delta, txids oldest first.
- ``POST mine`` ``{"blocks": n}`` mines n blocks, the first one taking the whole mempool.
- ``GET tip`` ``{"height", "hash"}``.
- ``POST addresses/<addr>/hide`` ``{"txids": [...]}`` an inconsistent indexer: the address's transaction
  lists leave those transactions out while its ``chain_stats`` still count them; ``DELETE`` shows them again.

Extended public keys: the simulator knows nothing of BIP-32 (it must not import the appliance, and
does not duplicate the derivation); tests derive the addresses themselves and fund each of them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from appliance.sim.core import Request, Response, SimState, VenueSim

CHAIN_PAGE = 25
MEMPOOL_PAGE = 50
GENESIS_TIME = 1_700_000_000  # block times are deterministic: GENESIS_TIME + 600 * height
START_HEIGHT = 100
_ADDRESS = re.compile(r"^[A-Za-z0-9]{14,90}$")
_TXID = re.compile(r"^[0-9a-f]{64}$")
_BECH32_CHARS = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


@dataclass
class Output:
    address: str
    value: int


@dataclass
class Input:
    txid: str
    vout: int
    address: str
    value: int


@dataclass
class Block:
    height: int
    hash: str
    time: int
    previous: str
    txids: list[str] = field(default_factory=list)


@dataclass
class Tx:
    txid: str
    vin: list[Input]
    vout: list[Output]
    fee: int
    block: Block | None = None


def script_type(address: str) -> str:
    lower = address.lower()
    if lower.startswith(("bc1q", "tb1q", "bcrt1q")):
        return "v0_p2wpkh" if len(lower) < 50 else "v0_p2wsh"
    if lower.startswith(("bc1p", "tb1p", "bcrt1p")):
        return "v1_p2tr"
    if address[:1] in ("3", "2"):
        return "p2sh"
    return "p2pkh"


class EsploraSim(VenueSim):
    id = "esplora"
    host = "blockstream.info"

    def __init__(self, state: SimState) -> None:
        super().__init__(state)
        self.blocks: list[Block] = []
        self.txs: dict[str, Tx] = {}
        self.history: dict[str, list[str]] = {}  # address -> txids, in the order they were made
        self.spent: dict[tuple[str, int], str] = {}
        self.mempool: list[str] = []
        self.hidden: set[str] = set()  # txids the address listings leave out (an inconsistent indexer)
        self.mine(START_HEIGHT + 1)

    # -- chain --------------------------------------------------------------------------------
    def _hash(self, *parts: Any) -> str:
        salt = self.state.rng.getrandbits(64)
        return hashlib.sha256(repr((*parts, salt)).encode()).hexdigest()

    @property
    def tip(self) -> Block:
        return self.blocks[-1]

    def mine(self, count: int) -> list[Block]:
        made = []
        for _ in range(count):
            height = len(self.blocks)
            previous = self.blocks[-1].hash if self.blocks else "0" * 64
            block = Block(height, self._hash("block", height, previous), GENESIS_TIME + 600 * height, previous)
            for txid in self.mempool:
                self.txs[txid].block = block
                block.txids.append(txid)
            self.mempool = []
            self.blocks.append(block)
            made.append(block)
        return made

    def external_address(self, like: str) -> str:
        lower = like.lower()
        hrp = lower[: lower.rfind("1")] if lower.startswith(("bc1", "tb1", "bcrt1")) else "bc"
        return hrp + "1q" + "".join(self.state.rng.choice(_BECH32_CHARS) for _ in range(38))

    def _add(self, tx: Tx) -> Tx:
        self.txs[tx.txid] = tx
        self.mempool.append(tx.txid)
        touched = {i.address for i in tx.vin} | {o.address for o in tx.vout}
        for address in touched:
            self.history.setdefault(address, []).append(tx.txid)
        for i in tx.vin:
            if i.txid in self.txs:
                self.spent[(i.txid, i.vout)] = tx.txid
        return tx

    def receive(self, address: str, value: int) -> Tx:
        rng = self.state.rng
        fee = rng.randint(141, 2_000)
        source = self.external_address(address)
        change = rng.randint(0, 50_000_000)
        vin = [Input(self._hash("ext", address, value), rng.randint(0, 3), source, value + change + fee)]
        vout = [Output(address, value)] + ([Output(source, change)] if change else [])
        rng.shuffle(vout)
        return self._add(Tx(self._hash("tx", address, value), vin, vout, fee))

    def send(self, address: str, value: int, *, to: str | None = None, fee: int = 300,
             change: str | None = None) -> Tx:
        utxos = [(txid, n, out) for txid in self.history.get(address, [])
                 for n, out in enumerate(self.txs[txid].vout)
                 if out.address == address and (txid, n) not in self.spent]
        chosen: list[Input] = []
        total = 0
        for txid, n, out in utxos:
            if total >= value + fee:
                break
            chosen.append(Input(txid, n, address, out.value))
            total += out.value
        if total < value + fee:
            raise ValueError(f"{address} holds {total} sats, cannot send {value} + fee {fee}")
        vout = [Output(to or self.external_address(address), value)]
        if total - value - fee:
            vout.append(Output(change or address, total - value - fee))
        return self._add(Tx(self._hash("tx", address, value, "send"), chosen, vout, fee))

    # -- ground truth ---------------------------------------------------------------------------
    def stats(self, address: str, confirmed: bool) -> dict[str, int]:
        funded_n = funded = spent_n = spent = count = 0
        for txid in self.history.get(address, []):
            tx = self.txs[txid]
            if (tx.block is not None) != confirmed:
                continue
            count += 1
            for out in tx.vout:
                if out.address == address:
                    funded_n += 1
                    funded += out.value
            for i in tx.vin:
                if i.address == address:
                    spent_n += 1
                    spent += i.value
        return {"funded_txo_count": funded_n, "funded_txo_sum": funded, "spent_txo_count": spent_n,
                "spent_txo_sum": spent, "tx_count": count}

    def chain_history(self, address: str) -> list[Tx]:
        """Confirmed transactions of ``address``, newest first (height, then position in the block)."""
        placed = [(block, self.txs[t]) for t in self.history.get(address, [])
                  if (block := self.txs[t].block) and t not in self.hidden]
        placed.sort(key=lambda pair: (pair[0].height, pair[0].txids.index(pair[1].txid)), reverse=True)
        return [tx for _block, tx in placed]

    def mempool_history(self, address: str) -> list[Tx]:
        return [self.txs[t] for t in reversed(self.history.get(address, [])) if self.txs[t].block is None]

    # -- wire format ----------------------------------------------------------------------------
    def render_tx(self, tx: Tx) -> dict[str, Any]:
        def script(address: str, value: int) -> dict[str, Any]:
            return {"scriptpubkey": "", "scriptpubkey_asm": "", "scriptpubkey_type": script_type(address),
                    "scriptpubkey_address": address, "value": value}

        status: dict[str, Any] = {"confirmed": False}
        if tx.block is not None:
            status = {"confirmed": True, "block_height": tx.block.height, "block_hash": tx.block.hash,
                      "block_time": tx.block.time}
        return {
            "txid": tx.txid, "version": 2, "locktime": 0,
            "vin": [{"txid": i.txid, "vout": i.vout, "prevout": script(i.address, i.value), "scriptsig": "",
                     "scriptsig_asm": "", "witness": [], "is_coinbase": False, "sequence": 4294967293}
                    for i in tx.vin],
            "vout": [script(o.address, o.value) for o in tx.vout],
            "size": 110 + 68 * len(tx.vin) + 31 * len(tx.vout), "weight": 4 * (110 + 68 * len(tx.vin)),
            "fee": tx.fee, "status": status,
        }

    def render_block(self, block: Block) -> dict[str, Any]:
        return {"id": block.hash, "height": block.height, "version": 0x20000000, "timestamp": block.time,
                "tx_count": len(block.txids), "size": 285, "weight": 1140, "merkle_root": self._merkle(block),
                "previousblockhash": block.previous, "mediantime": block.time - 3000, "nonce": 0,
                "bits": 386089497, "difficulty": 1}

    @staticmethod
    def _merkle(block: Block) -> str:
        return hashlib.sha256("".join(block.txids).encode()).hexdigest()

    def rate_limit_response(self, retry_after: int) -> Response:
        return Response(429, "Too Many Requests", {"Retry-After": str(retry_after)}, content_type="text/plain")

    def handle(self, req: Request) -> Response:
        if req.method != "GET":
            return _text(405, "Method Not Allowed")
        segs = [s for s in req.path.split("/") if s]
        if not segs or segs[0] != "api":
            return _text(404, "Not Found")
        segs = segs[1:]
        if segs == ["blocks", "tip", "height"]:
            return _text(200, str(self.tip.height))
        if segs == ["blocks", "tip", "hash"]:
            return _text(200, self.tip.hash)
        if len(segs) == 2 and segs[0] == "block-height":
            if not segs[1].isdigit() or int(segs[1]) >= len(self.blocks):
                return _text(404, "Block not found")
            return _text(200, self.blocks[int(segs[1])].hash)
        if len(segs) == 2 and segs[0] == "block":
            found = next((b for b in self.blocks if b.hash == segs[1]), None)
            return Response(200, self.render_block(found)) if found else _text(404, "Block not found")
        if len(segs) == 2 and segs[0] == "tx":
            if not _TXID.match(segs[1]):
                return _text(400, "Invalid hex string")
            tx = self.txs.get(segs[1])
            return Response(200, self.render_tx(tx)) if tx else _text(404, "Transaction not found")
        if len(segs) >= 2 and segs[0] == "address":
            return self.address_request(segs[1], segs[2:])
        return _text(404, "Not Found")

    def address_request(self, address: str, rest: list[str]) -> Response:
        if not _ADDRESS.match(address):
            return _text(400, "Invalid Bitcoin address")
        if not rest:
            return Response(200, {"address": address, "chain_stats": self.stats(address, True),
                                  "mempool_stats": self.stats(address, False)})
        chain = self.chain_history(address)
        if rest == ["txs"]:
            page = self.mempool_history(address)[:MEMPOOL_PAGE] + chain[:CHAIN_PAGE]
            return Response(200, [self.render_tx(tx) for tx in page])
        if rest == ["txs", "mempool"]:
            return Response(200, [self.render_tx(tx) for tx in self.mempool_history(address)[:MEMPOOL_PAGE]])
        if rest == ["txs", "chain"]:
            return Response(200, [self.render_tx(tx) for tx in chain[:CHAIN_PAGE]])
        if len(rest) == 3 and rest[:2] == ["txs", "chain"]:
            if not _TXID.match(rest[2]):
                return _text(400, "Invalid hex string")
            ids = [tx.txid for tx in chain]
            start = ids.index(rest[2]) + 1 if rest[2] in ids else len(ids)
            return Response(200, [self.render_tx(tx) for tx in chain[start:start + CHAIN_PAGE]])
        return _text(404, "Not Found")

    # -- control API ----------------------------------------------------------------------------
    def control(self, segs: list[str], method: str, body: dict[str, Any]) -> Response | None:
        if segs == ["tip"] and method == "GET":
            return Response(200, {"height": self.tip.height, "hash": self.tip.hash})
        if segs == ["mine"] and method == "POST":
            made = self.mine(int(body.get("blocks", 1)))
            return Response(200, {"height": self.tip.height, "hashes": [b.hash for b in made]})
        if len(segs) == 2 and segs[0] == "addresses" and method == "GET":
            return Response(200, self.ledger(segs[1]))
        if len(segs) == 3 and segs[0] == "addresses" and segs[2] == "txs" and method == "POST":
            return Response(200, {"txids": self.add_txs(segs[1], body)})
        if len(segs) == 3 and segs[0] == "addresses" and segs[2] == "hide":
            if method == "POST":
                self.hidden.update(str(t) for t in body.get("txids", []))
            elif method == "DELETE":
                self.hidden.clear()
            else:
                return None
            return Response(200, {"hidden": sorted(self.hidden)})
        return None

    def add_txs(self, address: str, body: dict[str, Any]) -> list[str]:
        rng = self.state.rng
        count = int(body.get("count", 0))
        specs = body.get("txs") or [{"receive": rng.randint(1_000, 5_000_000)} for _ in range(count)]
        confirmed = bool(body.get("confirmed", True))
        same_block = bool(body.get("same_block", False))
        made = []
        for spec in specs:
            if "receive" in spec:
                tx = self.receive(address, int(spec["receive"]))
            else:
                tx = self.send(address, int(spec["send"]), to=spec.get("to"), fee=int(spec.get("fee", 300)),
                               change=spec.get("change"))
            made.append(tx.txid)
            if confirmed and not same_block:
                self.mine(1)
        if confirmed and same_block:
            self.mine(1)
        return made

    def ledger(self, address: str) -> dict[str, Any]:
        chain, pool = self.stats(address, True), self.stats(address, False)
        ordered = self.history.get(address, [])
        return {
            "address": address,
            "balance_sats": chain["funded_txo_sum"] - chain["spent_txo_sum"],
            "mempool_delta_sats": pool["funded_txo_sum"] - pool["spent_txo_sum"],
            "txids": list(ordered),
            "confirmed_txids": [t for t in ordered if self.txs[t].block is not None],
        }


def _text(status: int, text: str) -> Response:
    return Response(status, text, content_type="text/plain")
