"""Bitcoin addresses and wallets (xpub/ypub/zpub) through an Esplora-compatible REST API
(self-hosted esplora/electrs, or mempool).

- The egress id is ``esplora`` (limiter and allowlist); ``chains.bitcoin.esplora_url`` is the
  destination, path prefix included (``https://esplora.example/api``). Only the read paths below may be
  requested.
- An extended public key is one wallet: receive (0/i) and change (1/i) addresses are derived with
  BIP-32 public derivation, typed by the key's prefix (xpub P2PKH, ypub P2SH-P2WPKH, zpub P2WPKH), and
  discovered until ``gap_limit`` consecutive unused addresses on each chain.
- Balances are confirmed only (``chain_stats`` funded - spent): mempool transactions are not final,
  and transfers are recorded confirmed only too, so the balance always matches the recorded transfers.
  Unconfirmed transactions are counted in ``Page.notes["unconfirmed"]``.
- History: each address's confirmed transactions newest first (``/txs``, then ``/txs/chain/<last>``,
  25 per page), one page per call. Each transaction gives one record with its net effect on the wallet
  (outputs to wallet addresses minus inputs from them), reported once per wallet by the first of its
  addresses it touches, so change sent back to the wallet is not a transfer. For a payment out whose
  inputs are all the wallet's, ``amount`` excludes the miner fee and ``fee_amount`` carries it (as
  exchange withdrawals do); otherwise the fee cannot be attributed and ``amount`` is the whole net.
- A run skips addresses whose confirmed transaction count is unchanged, and stops each walk at the
  newest block it recorded last time (the cursor keeps that height and its txids per address), so a
  second sync adds nothing. Reorgs are not detected: a transaction moved to another block keeps its
  first record (its txid is unchanged).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from appliance.errors import ConfigError, VenueBadData
from appliance.settings import BitcoinSettings
from appliance.venues import egress as egress_rules
from appliance.venues.base import Balance, Kind, Page, Stream, TxRecord, WalletAdapter
from appliance.venues.chains.addresses import BitcoinTarget, validate_bitcoin
from appliance.venues.chains.primitives import DerivationError
from appliance.venues.chains.transport import raise_for_http, send
from appliance.venues.egress import BITCOIN_EGRESS_ID, Egress

EGRESS_ID = BITCOIN_EGRESS_ID
CHAIN_PAGE = 25
SATS = Decimal(100_000_000)
RECEIVE, CHANGE = 0, 1


def btc(sats: int) -> Decimal:
    return (Decimal(sats) / SATS).quantize(Decimal("0.00000001"))


class EsploraClient:
    """GET-only client of the Esplora REST API over one egress session."""

    def __init__(self, egress: Egress, url: str, venue: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("chains.bitcoin.esplora_url must be an http(s) URL")
        self.venue = venue
        self.base = url.rstrip("/")
        self.hosts = (parts.hostname,)
        prefix = re.escape(parts.path.rstrip("/"))
        address, txid = r"[A-Za-z0-9]{14,90}", r"[0-9a-f]{64}"
        rules = egress_rules.read(
            "GET", rf"{prefix}/blocks/tip/(height|hash)", rf"{prefix}/block/{txid}", rf"{prefix}/tx/{txid}",
            rf"{prefix}/address/{address}", rf"{prefix}/address/{address}/txs",
            rf"{prefix}/address/{address}/txs/chain/{txid}")
        self.session = egress.session(EGRESS_ID, self.hosts, rules)

    def get(self, path: str) -> Any:
        response = send(self.session, self.venue, "GET", self.base + path)
        raise_for_http(self.venue, response)
        return response

    def text(self, path: str) -> str:
        return str(self.get(path).text).strip()

    def json(self, path: str) -> Any:
        try:
            return self.get(path).json()
        except ValueError:
            raise VenueBadData(self.venue, f"{path.split('/')[1]} answer is not valid JSON") from None


@dataclass
class Wallet:
    """The addresses a target covers, in derivation order, and what discovery learnt about them."""

    owned: dict[str, int]  # address -> position (receive chain first, then change)
    used: list[str]
    chain_tx_count: dict[str, int]
    balance_sats: int
    scanned: list[int] = field(default_factory=lambda: [0, 0])  # addresses looked at per chain
    unconfirmed: int = 0


class BitcoinAdapter(WalletAdapter):
    id = "bitcoin"
    name = "Bitcoin"
    kind = "wallet"
    streams = (Stream.TRANSFERS,)

    def __init__(self, egress: Egress, settings: BitcoinSettings) -> None:
        if not settings.esplora_url:
            raise ConfigError("chains.bitcoin.esplora_url is empty")
        self.egress = egress
        self.settings = settings
        self.client = EsploraClient(egress, settings.esplora_url, self.id)
        self.hosts = self.client.hosts

    # -- addresses ----------------------------------------------------------------------------
    def validate_address(self, address: str) -> str:
        return validate_bitcoin(address, self.settings.network).canonical

    def target(self, address: str) -> BitcoinTarget:
        return validate_bitcoin(address, self.settings.network)

    def stats(self, address: str) -> tuple[int, int, int]:
        """(confirmed balance in sats, confirmed tx count, mempool tx count) of one address."""
        body = self.client.json(f"/address/{address}")
        try:
            chain, pool = body["chain_stats"], body["mempool_stats"]
            balance = int(chain["funded_txo_sum"]) - int(chain["spent_txo_sum"])
            return balance, int(chain["tx_count"]), int(pool["tx_count"])
        except (KeyError, TypeError, ValueError):
            raise VenueBadData(self.id, "address answer lacks chain_stats/mempool_stats") from None

    def derived(self, target: BitcoinTarget, chain: int, index: int) -> str | None:
        assert target.xpub is not None
        try:
            return target.xpub.address(chain, index)
        except DerivationError:
            return None  # BIP-32: an invalid child (probability ~2^-127) is skipped

    def discover(self, target: BitcoinTarget) -> Wallet:
        if target.xpub is None:
            balance, confirmed, pending = self.stats(target.canonical)
            used = [target.canonical] if confirmed else []
            return Wallet({target.canonical: 0}, used, {target.canonical: confirmed}, balance, [1, 0], pending)
        wallet = Wallet({}, [], {}, 0)
        for chain in (RECEIVE, CHANGE):
            index = unused = 0
            while unused < self.settings.gap_limit:
                address = self.derived(target, chain, index)
                index += 1
                if address is None:
                    continue
                wallet.owned[address] = len(wallet.owned)
                balance, confirmed, pending = self.stats(address)
                if confirmed or pending:
                    unused = 0
                    wallet.balance_sats += balance
                    wallet.unconfirmed += pending
                    if confirmed:
                        wallet.used.append(address)
                        wallet.chain_tx_count[address] = confirmed
                else:
                    unused += 1
            wallet.scanned[chain] = index
        return wallet

    def owned(self, target: BitcoinTarget, scanned: list[int]) -> dict[str, int]:
        if target.xpub is None:
            return {target.canonical: 0}
        out: dict[str, int] = {}
        for chain in (RECEIVE, CHANGE):
            for index in range(scanned[chain]):
                address = self.derived(target, chain, index)
                if address is not None:
                    out[address] = len(out)
        return out

    # -- balances -----------------------------------------------------------------------------
    def reconcilable(self, asset: str, account: str) -> bool:
        # Full history of every address is read, and both balances and transfers count confirmed
        # transactions only: the balance must be the net of the transfers, fees included.
        return asset == "BTC" and account == ""

    def fetch_balances(self, address: str) -> list[Balance]:
        wallet = self.discover(self.target(address))
        return [Balance("BTC", btc(wallet.balance_sats))] if wallet.balance_sats else []

    # -- transfers ----------------------------------------------------------------------------
    def tip(self) -> tuple[int, dt.datetime]:
        block_hash = self.client.text("/blocks/tip/hash")
        if not re.fullmatch(r"[0-9a-f]{64}", block_hash):
            raise VenueBadData(self.id, "tip hash is not a block hash")
        block = self.client.json(f"/block/{block_hash}")
        try:
            return int(block["height"]), dt.datetime.fromtimestamp(int(block["timestamp"]), dt.UTC)
        except (KeyError, TypeError, ValueError):
            raise VenueBadData(self.id, "block answer lacks height/timestamp") from None

    def fetch_transactions(self, address: str, stream: str, cursor: Mapping[str, Any]) -> Page:
        if stream != Stream.TRANSFERS:
            raise VenueBadData(self.id, f"stream {stream!r} is not served by this adapter")
        target = self.target(address)
        known: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (cursor.get("known") or {}).items()}
        run: dict[str, Any] | None = dict(cursor["run"]) if cursor.get("run") else None
        notes: dict[str, Any] = {}
        if run is None:
            _height, tip_time = self.tip()
            wallet = self.discover(target)
            pending = [a for a in wallet.used if known.get(a, {}).get("n") != wallet.chain_tx_count[a]]
            run = {"tip_time": tip_time.isoformat(), "pending": pending, "i": 0, "last_seen": None,
                   "counts": {a: wallet.chain_tx_count[a] for a in pending}, "scanned": wallet.scanned,
                   "newest": None}
            notes["unconfirmed"] = wallet.unconfirmed
            if target.xpub is not None:
                notes["addresses_scanned"] = {"receive": wallet.scanned[RECEIVE], "change": wallet.scanned[CHANGE]}
                notes["addresses_used"] = len(wallet.used)
        records: list[TxRecord] = []
        if run["i"] < len(run["pending"]):
            records = self.history_page(target, run, known)
        if run["i"] >= len(run["pending"]):
            return Page(records, {"known": known}, True, complete_until=dt.datetime.fromisoformat(run["tip_time"]),
                        notes=notes)
        return Page(records, {"known": known, "run": run}, False, notes=notes)

    def history_page(self, target: BitcoinTarget, run: dict[str, Any], known: dict[str, dict[str, Any]]
                     ) -> list[TxRecord]:
        """One page of the current address's confirmed history; advances ``run`` and ``known``."""
        address = run["pending"][run["i"]]
        last_seen = run["last_seen"]
        path = f"/address/{address}/txs" + (f"/chain/{last_seen}" if last_seen else "")
        answer = self.client.json(path)
        if not isinstance(answer, list):
            raise VenueBadData(self.id, "address history is not a list")
        confirmed = [tx for tx in answer if isinstance(tx, dict) and (tx.get("status") or {}).get("confirmed")]
        marker = known.get(address)
        newest: dict[str, Any] | None = run["newest"]
        owned = self.owned(target, run["scanned"])
        records, reached_marker = [], False
        for tx in confirmed:
            txid, height = str(tx.get("txid")), int(tx["status"]["block_height"])
            if marker and height < marker["h"]:
                reached_marker = True
                break
            if marker and height == marker["h"] and txid in marker["top"]:
                continue
            if newest is None:
                newest = {"h": height, "top": [txid]}
            elif height == newest["h"]:
                newest["top"].append(txid)
            record = self.record(tx, owned, address)
            if record is not None:
                records.append(record)
        if len(confirmed) >= CHAIN_PAGE and not reached_marker:
            run["last_seen"], run["newest"] = str(confirmed[-1].get("txid")), newest
            return records
        # This address is done: remember the newest block recorded and the count discovery saw.
        if newest is None:
            entry = dict(marker) if marker else {"h": -1, "top": []}
        elif marker and newest["h"] == marker["h"]:
            entry = {"h": newest["h"], "top": sorted(set(marker["top"]) | set(newest["top"]))}
        else:
            entry = {"h": newest["h"], "top": sorted(newest["top"])}
        entry["n"] = run["counts"][address]
        known[address] = entry
        run["i"], run["last_seen"], run["newest"] = run["i"] + 1, None, None
        return records

    def record(self, tx: Mapping[str, Any], owned: dict[str, int], current: str) -> TxRecord | None:
        """The transaction's net effect on the wallet, or None when another wallet address reports it."""
        try:
            inputs = [(vin.get("prevout") or {}) for vin in tx["vin"]]
            outputs = list(tx["vout"])
            status = tx["status"]
            txid = str(tx["txid"])
            fee = int(tx.get("fee") or 0)
            spent = sum(int(p["value"]) for p in inputs if p.get("scriptpubkey_address") in owned)
            received = sum(int(o["value"]) for o in outputs if o.get("scriptpubkey_address") in owned)
            touched = {p.get("scriptpubkey_address") for p in inputs} | {o.get("scriptpubkey_address") for o in outputs}
            occurred = dt.datetime.fromtimestamp(int(status["block_time"]), dt.UTC)
            height, block_hash = int(status["block_height"]), str(status["block_hash"])
        except (KeyError, TypeError, ValueError):
            raise VenueBadData(self.id, "a transaction lacks vin/vout/status fields") from None
        ours = sorted((a for a in touched if a in owned), key=owned.__getitem__)
        if not ours or ours[0] != current:
            return None
        net = received - spent
        fee_amount: Decimal | None = None
        if net > 0:
            kind, sats = Kind.TRANSFER_IN, net
        elif net < 0:
            kind, sats = Kind.TRANSFER_OUT, -net
            if inputs and all(p.get("scriptpubkey_address") in owned for p in inputs) and fee <= sats:
                sats, fee_amount = sats - fee, btc(fee)
        else:
            kind, sats = Kind.OTHER, 0
        return TxRecord(
            stream=Stream.TRANSFERS, venue_tx_id=txid, kind=kind, occurred_at=occurred, asset="BTC",
            amount=btc(sats), fee_asset="BTC" if fee_amount is not None else None, fee_amount=fee_amount,
            block_number=height, block_hash=block_hash,
            raw={"txid": txid, "received_sats": received, "spent_sats": spent, "fee_sats": fee, "addresses": ours})
