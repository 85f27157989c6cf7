"""EVM chains (Ethereum, Polygon, Arbitrum, Base, Optimism...) through the JSON-RPC endpoint the
customer configures: their own node or a provider.

- One adapter per configured chain; its id is the chain's config name. The client may only call the
  read methods in ``ALLOWED_METHODS``: anything else (eth_sendRawTransaction, personal_*, debug_*...)
  is refused inside the box, before a byte leaves, whatever the endpoint would allow.
- Every call first checks ``eth_chainId`` against the configured chain id, so a node of another chain
  (a testnet, a misconfigured provider) can never be read as if it were this one.
- Balances: the native coin (``eth_getBalance``) and the configured ERC-20 tokens (``balanceOf``), with
  ``decimals()`` and ``symbol()`` read once per contract per process.
- Transfers: ERC-20 and ERC-721 ``Transfer`` logs to and from the address over all contracts, scanned
  in block ranges that start at ``max_block_range`` and halve when the node refuses a range, never past
  ``tip - confirmations``. The cursor keeps the next block to scan and checkpoints (number, hash) of
  the last scanned block and of every block that held a transfer; when the last one's hash changes,
  the scan walks back to the newest checkpoint still on the chain, reports the orphaned range in
  ``Page.notes`` (the sync engine marks those rows; nothing is rewritten) and rescans from there.
- Native coin transfers emit no logs; without an indexer they are not listed (said in every page).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from appliance.errors import ConfigError, EgressRefused, Invalid, VenueBadData, VenueRateLimited, VenueTransient
from appliance.settings import EvmChainSettings
from appliance.venues import egress as egress_rules
from appliance.venues.base import Balance, Kind, Page, Stream, TxRecord, WalletAdapter
from appliance.venues.chains.addresses import evm_checksum, validate_evm_address
from appliance.venues.chains.transport import raise_for_http, send
from appliance.venues.egress import Egress

log = logging.getLogger(__name__)

ALLOWED_METHODS = frozenset({
    "eth_chainId", "eth_blockNumber", "eth_getBalance", "eth_call", "eth_getLogs", "eth_getBlockByNumber",
})
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
SELECTOR_BALANCE_OF = "0x70a08231"
SELECTOR_DECIMALS = "0x313ce567"
SELECTOR_SYMBOL = "0x95d89b41"
NATIVE_DECIMALS = 18
LIMITATION = ("Native coin transfers are not listed: they emit no logs, and no indexer (Etherscan-compatible "
              "or Blockscout API) is configured. Native balances are read directly.")
CHUNKS_PER_PAGE = 10
RECORDS_PER_PAGE = 1000
MAX_CHECKPOINTS = 256
# Words providers use when an eth_getLogs range or result set is too large (geth, erigon, Infura,
# Alchemy, QuickNode, Ankr, public RPCs). Anything else is a real error.
_RANGE_WORDS = re.compile(
    r"block range|range too (large|wide)|range is too (large|wide)|too many blocks|exceed(s|ed)? maximum block"
    r"|more than \d+ (results|logs)|returned more than|too many results|response size|log response size"
    r"|logs? limit|limit the query|query timeout|up to a \d+ block range|max(imum)? range", re.IGNORECASE)


class RpcError(VenueBadData):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, venue: str, method: str, code: Any, message: str) -> None:
        super().__init__(venue, f"{method} failed: {message} (JSON-RPC {code})", venue_code=str(code))
        self.rpc_code = code
        self.rpc_message = message


class RangeLimited(Exception):
    """eth_getLogs asked for more blocks or results than the node serves; shrink and retry."""


@dataclass(frozen=True)
class Header:
    number: int
    hash: str
    time: dt.datetime


@dataclass(frozen=True)
class TokenMeta:
    symbol: str
    decimals: int | None


# decimals() and symbol() per (chain id, contract), read once per process.
_TOKEN_META: dict[tuple[int, str], TokenMeta] = {}
_TOKEN_LOCK = threading.Lock()


class JsonRpcClient:
    """A JSON-RPC 2.0 client over one egress session, limited to the read methods above."""

    def __init__(self, egress: Egress, venue_id: str, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"chains.evm.{venue_id}.rpc_url must be an http(s) URL")
        self.venue = venue_id
        self.url = url
        self.hosts = (parts.hostname,)
        path_rule = re.escape(parts.path) if parts.path else "/?"
        self.session = egress.session(venue_id, self.hosts, egress_rules.read("POST", path_rule))
        self._ids = itertools.count(1)

    def call(self, method: str, params: list[Any]) -> Any:
        if method not in ALLOWED_METHODS:
            log.warning("egress refused: JSON-RPC method %s is not a read method (%s)", method, self.venue)
            raise EgressRefused(self.venue, f"JSON-RPC method {method} is not on the read-only allowlist")
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        response = send(self.session, self.venue, "POST", self.url, json=body)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        error = payload.get("error") if isinstance(payload, dict) else None
        if error:
            raise self.error_of(method, error, response.status_code)
        raise_for_http(self.venue, response)
        if not isinstance(payload, dict) or "result" not in payload:
            raise VenueBadData(self.venue, f"{method} answered without a JSON-RPC result")
        return payload["result"]

    def error_of(self, method: str, error: Any, status: int) -> Exception:
        code = error.get("code") if isinstance(error, dict) else None
        message = " ".join(str(error.get("message", "") if isinstance(error, dict) else error).split())[:200]
        if method == "eth_getLogs" and (_RANGE_WORDS.search(message) or (code == -32005 and "rate" not in message)):
            return RangeLimited(message)
        lowered = message.lower()
        if status == 429 or code == 429 or "rate limit" in lowered or "too many requests" in lowered:
            return VenueRateLimited(self.venue, f"{method}: {message}", retry_after=5.0, venue_code=str(code))
        if status >= 500 or "header not found" in lowered or "timeout" in lowered or "unavailable" in lowered:
            return VenueTransient(self.venue, f"{method} failed: {message} (JSON-RPC {code})", venue_code=str(code))
        return RpcError(self.venue, method, code, message)


def scaled(raw: int, decimals: int) -> Decimal:
    """An integer amount in the token's smallest unit as an exact Decimal (no context rounding)."""
    return Decimal(raw) if decimals == 0 else Decimal(f"{raw}E-{decimals}")


def _quantity(value: Any, what: str, venue: str) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise VenueBadData(venue, f"{what} is not a hex quantity")
    try:
        return int(value, 16) if value != "0x" else 0
    except ValueError:
        raise VenueBadData(venue, f"{what} is not a hex quantity") from None


def decode_abi_string(data: bytes) -> str:
    """An ABI ``string`` return value, or a ``bytes32`` one (older tokens such as MKR)."""
    if len(data) == 32:
        text = data.rstrip(b"\0").decode("utf-8", "replace")
    elif len(data) >= 64:
        offset = int.from_bytes(data[:32], "big")
        length = int.from_bytes(data[offset:offset + 32], "big") if offset + 32 <= len(data) else 0
        text = data[offset + 32:offset + 32 + min(length, 256)].decode("utf-8", "replace")
    else:
        text = ""
    # Contract data is untrusted: keep printable characters only and a sane length.
    return "".join(c for c in text if c.isprintable()).strip()[:32]


class EvmAdapter(WalletAdapter):
    kind = "wallet"
    streams = (Stream.TRANSFERS,)

    def __init__(self, egress: Egress, name: str, settings: EvmChainSettings) -> None:
        if not settings.rpc_url:
            raise ConfigError(f"chains.evm.{name}.rpc_url is empty")
        self.id = name
        self.name = name.replace("_", " ").replace("-", " ").title()
        self.settings = settings
        self.egress = egress
        self.rpc = JsonRpcClient(egress, name, settings.rpc_url)
        self.hosts = self.rpc.hosts
        self._headers: OrderedDict[int, Header] = OrderedDict()

    # -- addresses ----------------------------------------------------------------------------
    def validate_address(self, address: str) -> str:
        return validate_evm_address(address)

    def check_chain(self) -> None:
        served = _quantity(self.rpc.call("eth_chainId", []), "eth_chainId", self.id)
        if served != self.settings.chain_id:
            raise VenueBadData(self.id, f"the endpoint serves chain id {served}, but chains.evm.{self.id}.chain_id "
                                        f"is {self.settings.chain_id}; refusing to read it", venue_code="wrong_chain")

    # -- balances -----------------------------------------------------------------------------
    def reconcilable(self, asset: str, account: str) -> bool:
        # Token balances (account = the contract) equal the net of the Transfer logs only when the scan
        # starts at genesis; the native coin moves without logs (gas, internal calls), so never.
        return bool(account) and self.settings.start_block == 0

    def fetch_balances(self, address: str) -> list[Balance]:
        owner = self.validate_address(address)
        self.check_chain()
        wei = _quantity(self.rpc.call("eth_getBalance", [owner, "latest"]), "eth_getBalance", self.id)
        balances = [Balance(self.settings.native_symbol, scaled(wei, NATIVE_DECIMALS))] if wei else []
        for token in self.settings.tokens:
            try:
                contract = validate_evm_address(token)
            except Invalid as exc:
                raise ConfigError(f"chains.evm.{self.id}.tokens: {token!r}: {exc.message}") from None
            meta = self.token_meta(contract)
            if meta.decimals is None:
                raise VenueBadData(self.id, f"token {contract} did not answer decimals(); is it an ERC-20 contract?")
            raw = self.call_uint(contract, SELECTOR_BALANCE_OF + _word(owner))
            if raw is None:
                raise VenueBadData(self.id, f"token {contract} did not answer balanceOf()")
            if raw:
                balances.append(Balance(meta.symbol, scaled(raw, meta.decimals), account=contract))
        return balances

    def call_raw(self, contract: str, data: str) -> bytes | None:
        """eth_call at the latest block; None when the contract reverts or has no such function."""
        try:
            result = self.rpc.call("eth_call", [{"to": contract, "data": data}, "latest"])
        except RpcError:
            return None
        if not isinstance(result, str) or not result.startswith("0x"):
            raise VenueBadData(self.id, "eth_call answered something that is not hex data")
        try:
            return bytes.fromhex(result[2:])
        except ValueError:
            raise VenueBadData(self.id, "eth_call answered something that is not hex data") from None

    def call_uint(self, contract: str, data: str) -> int | None:
        raw = self.call_raw(contract, data)
        return int.from_bytes(raw[:32], "big") if raw and len(raw) >= 32 else None

    def token_meta(self, contract: str) -> TokenMeta:
        key = (self.settings.chain_id, contract.lower())
        with _TOKEN_LOCK:
            cached = _TOKEN_META.get(key)
        if cached is not None:
            return cached
        decimals = self.call_uint(contract, SELECTOR_DECIMALS)
        if decimals is not None and decimals > 255:
            decimals = None  # not a uint8 decimals(): some other function answered
        symbol_raw = self.call_raw(contract, SELECTOR_SYMBOL)
        symbol = decode_abi_string(symbol_raw) if symbol_raw else ""
        meta = TokenMeta(symbol or f"{contract[:8]}…{contract[-4:]}", decimals)
        with _TOKEN_LOCK:
            _TOKEN_META[key] = meta
        return meta

    # -- blocks -------------------------------------------------------------------------------
    def header(self, number: int, *, fresh: bool = False) -> Header | None:
        """The block header at ``number`` (None beyond the tip). Cached by number; ``fresh`` refetches."""
        if not fresh:
            cached = self._headers.get(number)
            if cached is not None:
                return cached
        block = self.rpc.call("eth_getBlockByNumber", [hex(number), False])
        if block is None:
            return None
        if not isinstance(block, dict) or not isinstance(block.get("hash"), str):
            raise VenueBadData(self.id, f"block {number} answered without a hash")
        seconds = _quantity(block.get("timestamp"), f"block {number} timestamp", self.id)
        found = Header(number, block["hash"].lower(), dt.datetime.fromtimestamp(seconds, dt.UTC))
        self._headers[number] = found
        self._headers.move_to_end(number)
        while len(self._headers) > 20_000:
            self._headers.popitem(last=False)
        return found

    def header_of_log(self, number: int, block_hash: str) -> Header:
        cached = self._headers.get(number)
        if cached is not None and cached.hash == block_hash:
            return cached
        found = self.header(number, fresh=True)
        if found is None or found.hash != block_hash:
            raise VenueTransient(self.id, f"the chain reorganised at block {number} during the scan; "
                                          "the next run rescans it")
        return found

    # -- transfers ----------------------------------------------------------------------------
    def fetch_transactions(self, address: str, stream: str, cursor: Mapping[str, Any]) -> Page:
        if stream != Stream.TRANSFERS:
            raise VenueBadData(self.id, f"stream {stream!r} is not served by this adapter")
        owner = self.validate_address(address)
        self.check_chain()
        tip = _quantity(self.rpc.call("eth_blockNumber", []), "eth_blockNumber", self.id)
        final = tip - self.settings.confirmations
        next_block = int(cursor.get("next_block", self.settings.start_block))
        checkpoints: list[tuple[int, str]] = [(int(n), str(h)) for n, h in cursor.get("checkpoints", [])]
        notes: dict[str, Any] = {"limitations": LIMITATION}
        complete_until: dt.datetime | None = None

        if checkpoints:
            last_number, last_hash = checkpoints[-1]
            current = self.header(last_number, fresh=True)
            if current is not None and current.hash == last_hash:
                complete_until = current.time
            else:
                next_block, checkpoints = self.rewind(checkpoints, notes)

        size = int(cursor.get("range") or self.settings.max_block_range)
        records: list[TxRecord] = []
        chunks = 0
        while next_block <= final and chunks < CHUNKS_PER_PAGE and len(records) < RECORDS_PER_PAGE:
            to = min(final, next_block + size - 1)
            end = self.header(to, fresh=True)  # before the logs: a reorg in between shows up next run
            if end is None:
                raise VenueTransient(self.id, f"block {to} vanished below the tip during the scan")
            try:
                logs = self.transfer_logs(owner, next_block, to)
            except RangeLimited:
                if to == next_block:
                    raise VenueBadData(self.id, f"the node refuses eth_getLogs even for the single block {to}",
                                       venue_code="range_limit") from None
                size = max(1, (to - next_block + 1) // 2)
                notes["block_range"] = size
                continue
            for log in logs:
                records.extend(self.records_of(owner, log, notes))
                checkpoints.append((int(log["blockNumber"], 16), log["blockHash"].lower()))
            checkpoints.append((to, end.hash))
            next_block = to + 1
            complete_until = end.time
            chunks += 1

        done = next_block > final
        new_cursor: dict[str, Any] = {"next_block": next_block, "checkpoints": _trim(checkpoints)}
        if not done and size != self.settings.max_block_range:
            new_cursor["range"] = size  # keep the shrunk range for the rest of this run only
        return Page(records, new_cursor, done, complete_until=complete_until, notes=notes)

    def rewind(self, checkpoints: list[tuple[int, str]], notes: dict[str, Any]) -> tuple[int, list[tuple[int, str]]]:
        """The last scanned block is no longer on the chain: find the newest checkpoint that still is."""
        orphaned = [checkpoints[-1]]
        for number, block_hash in reversed(checkpoints[:-1]):
            current = self.header(number, fresh=True)
            if current is not None and current.hash == block_hash:
                ancestor = number
                break
            orphaned.append((number, block_hash))
        else:
            ancestor = self.settings.start_block - 1  # deeper than every checkpoint: rescan everything
        log.warning("%s: reorg below block %d; rows from block %d on are orphaned", self.id, checkpoints[-1][0],
                    ancestor + 1)
        notes["orphaned_from_block"] = ancestor + 1
        notes["orphaned_block_hashes"] = sorted({h for _n, h in orphaned})
        kept = [(n, h) for n, h in checkpoints if n <= ancestor]
        return ancestor + 1, kept

    def transfer_logs(self, owner: str, start: int, end: int) -> list[dict[str, Any]]:
        padded = "0x" + "0" * 24 + owner[2:].lower()
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for topics in ([TRANSFER_TOPIC, padded], [TRANSFER_TOPIC, None, padded]):
            result = self.rpc.call("eth_getLogs", [{"fromBlock": hex(start), "toBlock": hex(end), "topics": topics}])
            if not isinstance(result, list):
                raise VenueBadData(self.id, "eth_getLogs did not answer a list")
            for log in result:
                if not isinstance(log, dict) or log.get("removed"):
                    continue
                try:
                    found[(str(log["transactionHash"]).lower(), str(log["logIndex"]))] = log
                except KeyError:
                    raise VenueBadData(self.id, "eth_getLogs answered a log without transactionHash/logIndex") from None
        return sorted(found.values(), key=lambda log: (int(log["blockNumber"], 16), int(log["logIndex"], 16)))

    def records_of(self, owner: str, log: Mapping[str, Any], notes: dict[str, Any]) -> list[TxRecord]:
        topics = [str(t).lower() for t in log.get("topics") or []]
        contract = evm_checksum(str(log["address"]))
        data = str(log.get("data") or "0x")
        if len(topics) == 3 and len(data) == 66:
            standard = "erc20"
        elif len(topics) == 4 and data in ("0x", ""):
            standard = "erc721"
        else:
            notes["skipped_logs"] = int(notes.get("skipped_logs", 0)) + 1  # Transfer-shaped but neither
            return []
        sender, receiver = evm_checksum("0x" + topics[1][-40:]), evm_checksum("0x" + topics[2][-40:])
        number, block_hash = int(log["blockNumber"], 16), str(log["blockHash"]).lower()
        header = self.header_of_log(number, block_hash)
        meta = self.token_meta(contract)
        raw: dict[str, Any] = {"standard": standard, "contract": contract, "from": sender, "to": receiver,
                               "tx_hash": str(log["transactionHash"]).lower(), "log_index": int(log["logIndex"], 16)}
        if standard == "erc20":
            value = int(data, 16)
            raw["value"] = str(value)
            if meta.decimals is None:
                notes.setdefault("unscaled_tokens", []).append(contract)
            asset, amount = meta.symbol, scaled(value, meta.decimals or 0)
        else:
            token_id = int(topics[3], 16)
            raw["token_id"] = str(token_id)
            asset, amount = f"{meta.symbol}#{token_id}", Decimal(1)
        base_id = f"{raw['tx_hash']}:{raw['log_index']}"
        legs = [(Kind.TRANSFER_IN, receiver == owner), (Kind.TRANSFER_OUT, sender == owner)]
        both = sender == receiver == owner
        return [
            TxRecord(stream=Stream.TRANSFERS, venue_tx_id=f"{base_id}:{kind.value[9:]}" if both else base_id,
                     kind=kind, occurred_at=header.time, asset=asset, amount=amount, market=contract,
                     block_number=number, block_hash=block_hash, raw=raw)
            for kind, applies in legs if applies
        ]


def _word(address: str) -> str:
    return "0" * 24 + address[2:].lower()


def _trim(checkpoints: list[tuple[int, str]]) -> list[list[Any]]:
    unique = sorted(set(checkpoints))
    return [[n, h] for n, h in unique[-MAX_CHECKPOINTS:]]
