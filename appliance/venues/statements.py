"""Venue statement exports (CSV) read into the same records the API gives: history the API cannot reach.

Formats, as the venues document or produce them (docs/VENUES-SOURCES.md, "Statements"):

- ``coinbase_transactions``: Coinbase's transaction history report (Statements → Transaction history, CSV):
  a few preamble lines, then ``ID, Timestamp, Transaction Type, Asset, Quantity Transacted, Price Currency,
  Price at Transaction, Subtotal, Total (inclusive of fees and/or spread), Fees and/or Spread, Notes``
  (older reports: no ``ID``, ``Spot Price Currency`` / ``Spot Price at Transaction``). Times ``2024-07-15
  06:22:17 UTC`` or ``2021-04-01T12:34:56Z``; money may carry a currency sign and thousands separators.
- ``kraken_ledgers`` / ``kraken_trades``: Kraken's export (History → Export, Ledgers / Trades): ``txid, refid,
  time, type, subtype, aclass, asset, [wallet,] amount, fee, balance`` and ``txid, ordertxid, pair, [aclass,]
  time, type, ordertype, price, cost, fee, vol, margin, misc, ledgers``. Their ``txid`` is the API's id.
- ``binance_trades``: Binance's spot trade history export (Orders → Trade History → Export): ``Date(UTC), Pair,
  Side, Price, Executed, Amount, Fee`` (amounts suffixed with their coin: ``0.5BTC``).
- ``binance_transactions``: Binance's transaction history statement (Wallet → Transaction History → Generate all
  statements): ``User_ID, UTC_Time, Account, Operation, Coin, Change, Remark``; deposits and withdrawals are read
  from it (its trade rows are single legs: the trade history export holds the trades).

Rows the appliance has no stream for (rewards, staking, conversions between sub-accounts...) are counted as
skipped, never guessed. A row that cannot be read fails the whole file with its line number: a statement is
imported entirely or not at all. Records get the API's id where the export carries it (Kraken), else a stable
id derived from the row (``stmt:...``), so importing the same file twice adds nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from appliance.errors import Invalid
from appliance.venues.base import Kind, Stream, TxRecord

MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 200_000
_SUFFIXED = re.compile(r"^\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)\s*([A-Za-z0-9]*)\s*$")
_MONEY = re.compile(r"[^0-9.\-]")
# Kraken's legacy asset codes (X/Z prefixes) and its names for bitcoin and doge.
_KRAKEN_ALIASES = {"XBT": "BTC", "XXBT": "BTC", "XDG": "DOGE", "XXDG": "DOGE"}
_KRAKEN_QUOTES = ("ZUSD", "ZEUR", "ZGBP", "ZCAD", "ZJPY", "ZCHF", "ZAUD", "XXBT", "XETH", "USDT", "USDC", "DAI",
                  "USD", "EUR", "GBP", "CAD", "JPY", "CHF", "AUD", "XBT", "ETH", "BTC", "DOT")
_BINANCE_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "GBP", "AUD",
                   "USD", "DAI", "JPY")


@dataclass
class Statement:
    """A parsed statement: its format, the records per stream, the span of its rows and what was skipped."""

    format: str
    venue: str
    records: dict[str, list[TxRecord]] = field(default_factory=dict)
    streams: tuple[str, ...] = ()  # the streams this kind of statement covers (its gaps may be closed)
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    rows: int = 0
    skipped: int = 0

    def add(self, record: TxRecord | None, when: dt.datetime) -> None:
        self.rows += 1
        self.first = when if self.first is None or when < self.first else self.first
        self.last = when if self.last is None or when > self.last else self.last
        if record is None:
            self.skipped += 1
        else:
            self.records.setdefault(record.stream, []).append(record)


@dataclass(frozen=True)
class _Format:
    name: str
    venue: str
    streams: tuple[str, ...]
    required: frozenset[str]
    parse: Callable[[dict[str, str]], tuple[TxRecord | None, dt.datetime]]


class RowError(ValueError):
    pass


# -- field readers ------------------------------------------------------------------------------------

def _number(text: str, what: str) -> Decimal:
    cleaned = _MONEY.sub("", text or "")
    if cleaned in ("", "-", ".", "-."):
        raise RowError(f"{what} is empty")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise RowError(f"{what} is not a number: {text[:30]!r}") from None
    if not value.is_finite():
        raise RowError(f"{what} is not a finite number")
    return value


def _optional_number(text: str, what: str) -> Decimal | None:
    return None if not (text or "").strip() or (text or "").strip() in ("-", "") else _number(text, what)


def _time(text: str) -> dt.datetime:
    value = (text or "").strip().replace(" UTC", "").replace("Z", "+00:00")
    for candidate in (value, value.replace(" ", "T", 1)):
        try:
            moment = dt.datetime.fromisoformat(candidate)
        except ValueError:
            continue
        return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    raise RowError(f"not a date and time: {text[:40]!r}")


def _coin_amount(text: str, what: str) -> tuple[Decimal, str]:
    """Binance's ``0.5BTC`` / ``0.010000 BTC``: the amount and its coin."""
    match = _SUFFIXED.match(text or "")
    if not match:
        raise RowError(f"{what} is not an amount with its coin: {text[:30]!r}")
    return _number(match.group(1), what), match.group(2).upper()


def _stable_id(*parts: object) -> str:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]
    return f"stmt:{digest}"


def _split_pair(pair: str, quotes: Sequence[str]) -> tuple[str, str]:
    for quote in quotes:
        if pair.endswith(quote) and len(pair) > len(quote):
            return pair[: -len(quote)], quote
    raise RowError(f"cannot tell the two assets of the pair {pair[:20]!r}")


def _kraken_asset(code: str) -> str:
    code = code.strip().upper()
    if code in _KRAKEN_ALIASES:
        return _KRAKEN_ALIASES[code]
    if len(code) == 4 and code[0] in "XZ" and code not in ("USDT", "USDC", "ZRX"):
        code = code[1:]
    return _KRAKEN_ALIASES.get(code, code)


# -- Coinbase -----------------------------------------------------------------------------------------

_COINBASE_TRADES = {"buy": Kind.BUY, "advanced trade buy": Kind.BUY, "sell": Kind.SELL,
                    "advanced trade sell": Kind.SELL}
_COINBASE_IN = {"receive", "deposit", "pro withdrawal", "exchange withdrawal"}
_COINBASE_OUT = {"send", "withdrawal", "pro deposit", "exchange deposit"}


def _coinbase(row: dict[str, str]) -> tuple[TxRecord | None, dt.datetime]:
    when = _time(row["Timestamp"])
    kind_name = row["Transaction Type"].strip().lower()
    asset = row["Asset"].strip().upper()
    quantity = abs(_number(row["Quantity Transacted"], "Quantity Transacted"))
    currency = (row.get("Price Currency") or row.get("Spot Price Currency") or "").strip().upper()
    price = _optional_number(row.get("Price at Transaction") or row.get("Spot Price at Transaction") or "",
                             "Price at Transaction")
    fee = _optional_number(row.get("Fees and/or Spread") or row.get("Fees") or "", "Fees and/or Spread")
    subtotal = _optional_number(row.get("Subtotal") or "", "Subtotal")
    ident = (row.get("ID") or "").strip()
    raw = {k: v for k, v in row.items() if k}
    if kind_name in _COINBASE_TRADES:
        kind = _COINBASE_TRADES[kind_name]
        venue_id = _stable_id("coinbase", "trade", ident or when.isoformat(), kind, asset, quantity, price)
        return TxRecord(stream=Stream.TRADES, venue_tx_id=venue_id, kind=kind, occurred_at=when, asset=asset,
                        amount=quantity, market=f"{asset}/{currency}" if currency else asset,
                        quote_asset=currency or None, quote_amount=abs(subtotal) if subtotal is not None else None,
                        price=price, fee_asset=(currency or None) if fee is not None else None,
                        fee_amount=abs(fee) if fee is not None else None, raw=raw), when
    if kind_name in _COINBASE_IN or kind_name in _COINBASE_OUT:
        incoming = kind_name in _COINBASE_IN
        stream = Stream.DEPOSITS if incoming else Stream.WITHDRAWALS
        venue_id = _stable_id("coinbase", stream, ident or when.isoformat(), asset, quantity)
        return TxRecord(stream=stream, venue_tx_id=venue_id, kind=Kind.DEPOSIT if incoming else Kind.WITHDRAWAL,
                        occurred_at=when, asset=asset, amount=quantity, raw=raw), when
    return None, when  # rewards, staking, conversions, earn...: no stream of ours


# -- Kraken -------------------------------------------------------------------------------------------

def _kraken_ledger(row: dict[str, str]) -> tuple[TxRecord | None, dt.datetime]:
    when = _time(row["time"])
    kind_name = row["type"].strip().lower()
    if kind_name not in ("deposit", "withdrawal") or not row["txid"].strip():
        return None, when  # trade legs (the trades export holds trades), staking, transfers, margin...
    asset = _kraken_asset(row["asset"])
    stream = Stream.DEPOSITS if kind_name == "deposit" else Stream.WITHDRAWALS
    fee = _optional_number(row.get("fee", ""), "fee")
    return TxRecord(stream=stream, venue_tx_id=row["txid"].strip(), kind=Kind.DEPOSIT if kind_name == "deposit"
                    else Kind.WITHDRAWAL, occurred_at=when, asset=asset, amount=abs(_number(row["amount"], "amount")),
                    fee_asset=asset if fee is not None else None, fee_amount=fee,
                    raw={k: v for k, v in row.items() if k}), when


def _kraken_trade(row: dict[str, str]) -> tuple[TxRecord | None, dt.datetime]:
    when = _time(row["time"])
    pair = row["pair"].strip().upper()
    base_code, quote_code = _split_pair(pair, _KRAKEN_QUOTES)
    base, quote = _kraken_asset(base_code), _kraken_asset(quote_code)
    side = row["type"].strip().lower()
    if side not in ("buy", "sell"):
        raise RowError(f"type is neither buy nor sell: {row['type'][:10]!r}")
    return TxRecord(stream=Stream.TRADES, venue_tx_id=row["txid"].strip(), kind=Kind(side), occurred_at=when,
                    asset=base, amount=_number(row["vol"], "vol"), market=f"{base}/{quote}", quote_asset=quote,
                    quote_amount=_number(row["cost"], "cost"), price=_number(row["price"], "price"),
                    fee_asset=quote, fee_amount=_optional_number(row.get("fee", ""), "fee"),
                    raw={k: v for k, v in row.items() if k}), when


# -- Binance ------------------------------------------------------------------------------------------

def _binance_trade(row: dict[str, str]) -> tuple[TxRecord | None, dt.datetime]:
    when = _time(row["Date(UTC)"])
    pair = row["Pair"].strip().upper().replace("/", "")
    base, quote = _split_pair(pair, _BINANCE_QUOTES)
    side = row["Side"].strip().lower()
    if side not in ("buy", "sell"):
        raise RowError(f"Side is neither BUY nor SELL: {row['Side'][:10]!r}")
    executed, _unit = _coin_amount(row["Executed"], "Executed")
    total, _quote_unit = _coin_amount(row["Amount"], "Amount")
    fee, fee_coin = _coin_amount(row["Fee"], "Fee") if (row.get("Fee") or "").strip() else (None, "")
    price = _number(row["Price"], "Price")
    venue_id = _stable_id("binance", "trade", when.isoformat(), pair, side, executed, price)
    return TxRecord(stream=Stream.TRADES, venue_tx_id=venue_id, kind=Kind(side), occurred_at=when, asset=base,
                    amount=executed, market=f"{base}/{quote}", quote_asset=quote, quote_amount=total, price=price,
                    fee_asset=fee_coin or None, fee_amount=fee, raw={k: v for k, v in row.items() if k}), when


def _binance_transaction(row: dict[str, str]) -> tuple[TxRecord | None, dt.datetime]:
    when = _time(row["UTC_Time"])
    operation = row["Operation"].strip().lower()
    if operation not in ("deposit", "withdraw", "withdrawal"):
        return None, when
    asset = row["Coin"].strip().upper()
    change = _number(row["Change"], "Change")
    stream = Stream.DEPOSITS if operation == "deposit" else Stream.WITHDRAWALS
    venue_id = _stable_id("binance", stream, when.isoformat(), asset, abs(change))
    return TxRecord(stream=stream, venue_tx_id=venue_id, kind=Kind.DEPOSIT if operation == "deposit"
                    else Kind.WITHDRAWAL, occurred_at=when, asset=asset, amount=abs(change),
                    raw={k: v for k, v in row.items() if k}), when


FORMATS: tuple[_Format, ...] = (
    _Format("coinbase_transactions", "coinbase", (Stream.TRADES, Stream.DEPOSITS, Stream.WITHDRAWALS),
            frozenset({"Timestamp", "Transaction Type", "Asset", "Quantity Transacted"}), _coinbase),
    _Format("kraken_ledgers", "kraken", (Stream.DEPOSITS, Stream.WITHDRAWALS),
            frozenset({"txid", "refid", "time", "type", "asset", "amount", "fee"}), _kraken_ledger),
    _Format("kraken_trades", "kraken", (Stream.TRADES,),
            frozenset({"txid", "ordertxid", "pair", "time", "type", "price", "cost", "fee", "vol"}), _kraken_trade),
    _Format("binance_trades", "binance", (Stream.TRADES,),
            frozenset({"Date(UTC)", "Pair", "Side", "Price", "Executed", "Amount", "Fee"}), _binance_trade),
    _Format("binance_transactions", "binance", (Stream.DEPOSITS, Stream.WITHDRAWALS),
            frozenset({"UTC_Time", "Operation", "Coin", "Change"}), _binance_transaction),
)
VENUES = frozenset(f.venue for f in FORMATS)


def _lines(data: bytes) -> list[str]:
    if len(data) > MAX_BYTES:
        raise Invalid(f"the statement is larger than {MAX_BYTES // (1024 * 1024)} MB", field="file")
    if not data.strip():
        raise Invalid("the statement file is empty", field="file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise Invalid(f"the statement is not UTF-8 text (line {line})", field="file") from None
    if "\x00" in text:
        raise Invalid("the statement is not a text file", field="file")
    return text.splitlines()


def _header(lines: list[str], venue: str) -> tuple[_Format, int, list[str]]:
    """The format and its header row: the first line (of the first ten: Coinbase reports start with a
    preamble) whose columns hold a format's required columns."""
    for index, line in enumerate(lines[:10]):
        columns = [c.strip() for c in next(csv.reader([line]), [])]
        for fmt in FORMATS:
            if fmt.required <= set(columns):
                if fmt.venue != venue:
                    raise Invalid(f"this is a {fmt.venue.capitalize()} statement ({fmt.name}); the connection is "
                                  f"a {venue} one", field="file")
                return fmt, index, columns
    known = ", ".join(f.name for f in FORMATS if f.venue == venue) or "none"
    raise Invalid(f"not a statement format the appliance reads for {venue} (known: {known}); export the CSV "
                  "again as the venue produces it, without editing it", field="file")


def parse(venue: str, data: bytes) -> Statement:
    """Read a statement export of ``venue``; Invalid (with up to 20 line-numbered errors) if any row is bad."""
    if venue not in VENUES:
        raise Invalid(f"statements are imported for {', '.join(sorted(VENUES))} connections, not {venue}",
                      field="connection")
    lines = _lines(data)
    fmt, index, columns = _header(lines, venue)
    statement = Statement(fmt.name, venue, streams=fmt.streams)
    errors: list[dict[str, object]] = []
    for number, row in _rows(lines, index, columns):
        if statement.rows >= MAX_ROWS:
            raise Invalid(f"the statement has more than {MAX_ROWS} rows: export a shorter period", field="file")
        try:
            record, when = fmt.parse(row)
        except (RowError, KeyError) as exc:
            message = f"missing column {exc}" if isinstance(exc, KeyError) else str(exc)
            errors.append({"line": number, "message": message})
            if len(errors) >= 20:
                break
            continue
        statement.add(record, when)
    if errors:
        first = errors[0]
        raise Invalid(f"nothing was imported: {len(errors)} row(s) cannot be read (line {first['line']}: "
                      f"{first['message']})", field="file", detail={"errors": errors})
    if statement.rows == 0:
        raise Invalid("the statement has a header but no rows", field="file")
    return statement


def _rows(lines: list[str], index: int, columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO("\n".join(lines[index + 1:])))
    for offset, values in enumerate(reader, start=index + 2):
        if not values or not any(v.strip() for v in values):
            continue
        if len(values) != len(columns):
            raise Invalid(f"nothing was imported: line {offset} has {len(values)} columns, the header "
                          f"{len(columns)}", field="file", detail={"errors": [
                              {"line": offset, "message": "column count differs from the header"}]})
        yield offset, dict(zip(columns, (v.strip() for v in values), strict=True))
