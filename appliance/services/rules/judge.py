"""Judging one employee's records against the rules that apply to them: pure logic over plain rows
(facts.py reads them), producing findings (evaluate.py stores them as alerts, once per rule and record).

What each kind looks at:
- restricted / watch: transactions of every kind but fees and rewards, new holdings (a balance that
  appears) and new prediction positions, touching an entry while it is effective at the record's time;
- holding_period: sells matched first-in-first-out against the employee's buys of the same asset on
  every venue and wallet; a sell that uses a lot bought less than N days before breaks the rule (coins
  that arrived by deposit or were held before the history starts are not lots: moving coins between
  one's own accounts neither starts nor resets the clock);
- blackout: buys and sells inside the window, of the listed assets (or any);
- threshold: a single trade, transfer or new position worth more than the value in the base
  currency at its time, or a holding (all venues and wallets together) worth more now; a record that
  cannot be valued is reported as such, never passed or failed silently;
- new_account: transfers to (or from) an address the employee never connected.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from appliance.services.rules.catalogue import ALERT_KIND, window
from appliance.services.rules.common import Audience, time_text
from appliance.services.rules.facts import (
    OUTGOING,
    TOUCHING_KINDS,
    TRADE_KINDS,
    TRANSFER_KINDS,
    Account,
    Person,
    Position,
    Snapshot,
    Tx,
    counterparties,
    title_of,
)
from appliance.services.rules.matching import Entry, ListMatcher
from appliance.services.rules.values import Priced, Valuation
from appliance.store.base import decimal_to_text
from appliance.store.models import Rule


@dataclass(frozen=True)
class CompiledRule:
    id: int
    version: int
    kind: str
    name: str
    severity: str
    params: dict[str, Any]
    audience: Audience
    list_audience: Audience | None = None
    list_name: str = ""
    matcher: ListMatcher | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None

    @classmethod
    def of(cls, rule: Rule, matchers: dict[int, ListMatcher], list_facts: dict[int, tuple[str, Audience]]
           ) -> CompiledRule:
        list_id = rule.params.get("list_id")
        name, list_audience = list_facts.get(list_id, ("", None)) if list_id else ("", None)
        start = end = None
        if rule.kind == "blackout":
            start, end = window(rule)
        return cls(rule.id, rule.version, rule.kind, rule.name, rule.severity, dict(rule.params),
                   Audience.of(rule.applies_to), list_audience if rule.kind in ("restricted", "watch") else None,
                   name, matchers.get(list_id) if list_id else None, start, end)

    def applies(self, person: Person) -> bool:
        if not self.audience.includes(person.department, person.groups):
            return False
        return self.list_audience is None or self.list_audience.includes(person.department, person.groups)

    @property
    def alert_kind(self) -> str:
        return ALERT_KIND[self.kind]


@dataclass(slots=True)
class Finding:
    rule: CompiledRule
    employee_id: int
    connection_id: int | None
    record_key: str
    occurred_at: dt.datetime | None
    title: str
    records: list[dict[str, Any]]
    entries: list[Entry] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Candidate:
    """A record a threshold rule must value before it can say anything."""

    rule: CompiledRule
    employee_id: int
    connection_id: int | None
    record_key: str
    occurred_at: dt.datetime | None
    what: str | tuple[Tx, Account]  # a transaction's facts are written out only if it breaks the rule
    priced: Priced
    records: list[dict[str, Any]]


@dataclass(slots=True)
class Unvalued:
    rule_id: int
    employee_id: int
    record_key: str
    reason: str


def tx_evidence(tx: Tx, account: Account, employee_id: int) -> dict[str, Any]:
    return {"type": "transaction", "id": tx.id, "employee_id": employee_id, "connection_id": tx.connection_id,
            "venue": account.venue, "kind": tx.kind, "asset": tx.asset, "market": tx.market,
            "occurred_at": time_text(tx.occurred_at)}


def position_evidence(p: Position, account: Account, employee_id: int) -> dict[str, Any]:
    return {"type": "position", "id": p.id, "employee_id": employee_id, "connection_id": p.connection_id,
            "venue": account.venue, "market_id": p.market_id, "market_title": p.market_title, "outcome": p.outcome,
            "occurred_at": time_text(p.valid_from)}


def snapshot_evidence(s: Snapshot, account: Account, employee_id: int) -> dict[str, Any]:
    return {"type": "balance", "id": s.id, "employee_id": employee_id, "connection_id": s.connection_id,
            "venue": account.venue, "asset": s.asset, "account": s.account, "occurred_at": time_text(s.valid_from)}


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _key(prefix: str, *parts: Any) -> str:
    text = ":".join(str(p) for p in parts)
    key = f"{prefix}:{text}"
    return key if len(key) <= 100 else f"{prefix}:{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def _list_label(rule: CompiledRule) -> str:
    return f"{'Restricted' if rule.kind == 'restricted' else 'Watch'} list {rule.list_name!r}"


@dataclass
class Judgement:
    findings: list[Finding] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)


class Judge:
    """Judges one employee at a time with the compiled rules."""

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.rules = list(rules)
        # (rule id, record key) already alerted: judged no further (set by the evaluation per batch).
        self.seen: set[tuple[int, str]] = set()

    def applicable(self, person: Person) -> list[CompiledRule]:
        return [r for r in self.rules if r.applies(person)]

    def employee(self, person: Person, accounts: dict[int, Account], txs: Sequence[Tx], positions: Sequence[Position],
                 snapshots: Sequence[Snapshot], holdings: dict[str, tuple[Decimal, list[Snapshot]]],
                 catalogue: dict[str, tuple[str, str]], *, now: dt.datetime,
                 judged_tx: set[int] | None = None) -> Judgement:
        """``txs`` in time order; ``positions`` and ``snapshots`` are the openings (new positions, new
        holdings) to judge; ``holdings`` the current total per asset; ``judged_tx`` limits the per-record
        checks to these transactions (the FIFO of the holding period always reads all of ``txs``)."""
        out = Judgement()
        rules = self.applicable(person)
        if not rules:
            return out
        known = {a.address.lower() for a in accounts.values() if a.address}
        # The per-record loop is the hot path of a full evaluation (millions of records): rules are sorted
        # by what they look at once, and a list is asked only about records that can touch it.
        listed = [r for r in rules if r.kind in ("restricted", "watch") and r.matcher is not None
                  and not r.matcher.empty]
        blackouts = [r for r in rules if r.kind == "blackout" and r.start and r.end]
        thresholds = [(r, "trade" in r.params.get("on", ()), "transfer" in r.params.get("on", ()))
                      for r in rules if r.kind == "threshold"]
        new_accounts = [r for r in rules if r.kind == "new_account"]
        for tx in txs:
            if judged_tx is not None and tx.id not in judged_tx:
                continue
            account = accounts.get(tx.connection_id)
            if account is None:
                continue
            if listed and tx.kind in TOUCHING_KINDS:
                prediction = account.kind == "prediction"
                asset, quote = tx.asset.upper(), (tx.quote_asset or "").upper()
                for rule in listed:
                    matcher = rule.matcher
                    assert matcher is not None
                    if not prediction and not matcher.could_touch(asset, quote, account.venue, tx.market):
                        continue
                    self._transaction(out, rule, person, account, tx, catalogue, known)
            trade = tx.kind in TRADE_KINDS
            transfer = not trade and tx.kind in TRANSFER_KINDS
            if trade:
                for rule in blackouts:
                    if rule.start <= tx.occurred_at < rule.end:  # type: ignore[operator]  # both set (filtered)
                        self._transaction(out, rule, person, account, tx, catalogue, known)
            elif transfer and tx.raw is not None:
                for rule in new_accounts:
                    self._transaction(out, rule, person, account, tx, catalogue, known)
            if trade or transfer:
                for rule, on_trade, on_transfer in thresholds:
                    if (on_trade if trade else on_transfer) and (rule.id, f"tx:{tx.id}") not in self.seen:
                        out.candidates.append(Candidate(
                            rule, person.id, tx.connection_id, f"tx:{tx.id}", tx.occurred_at, (tx, account),
                            Priced(tx.asset, tx.amount, tx.occurred_at, tx.quote_asset, tx.quote_amount, tx.id), []))
        for rule in rules:
            if rule.kind == "holding_period":
                out.findings.extend(self._holding_period(rule, person, accounts, txs))
        for p in positions:
            account = accounts.get(p.connection_id)
            if account is not None:
                for rule in rules:
                    self._position(out, rule, person, account, p)
        for s in snapshots:
            account = accounts.get(s.connection_id)
            if account is not None:
                for rule in rules:
                    self._snapshot(out, rule, person, account, s)
        for rule in rules:
            if rule.kind == "threshold" and "holding" in rule.params.get("on", ()):
                for asset, (amount, rows) in holdings.items():
                    if amount <= 0 or (rule.id, _key("holding", person.id, asset)) in self.seen:
                        continue
                    evidence = [snapshot_evidence(s, accounts[s.connection_id], person.id) for s in rows
                                if s.connection_id in accounts]
                    out.candidates.append(Candidate(rule, person.id, None, _key("holding", person.id, asset), now,
                                                    f"holding of {asset}", Priced(asset, amount, now), evidence))
        return out

    # -- transactions ------------------------------------------------------------------------------
    def _transaction(self, out: Judgement, rule: CompiledRule, person: Person, account: Account, tx: Tx,
                     catalogue: dict[str, tuple[str, str]], known: set[str]) -> None:
        kind = rule.kind
        key = f"tx:{tx.id}"
        seen = self.seen
        if kind in ("restricted", "watch"):
            if tx.kind not in TOUCHING_KINDS or rule.matcher is None or rule.matcher.empty or (rule.id, key) in seen:
                return
            matched = self._match_tx(rule.matcher, account, tx, catalogue)
            if matched:
                what = f"{tx.kind.replace('_', ' ')} of {_short(tx.asset, 60)} on {account.label or account.venue}"
                out.findings.append(Finding(rule, person.id, tx.connection_id, key, tx.occurred_at,
                                            f"{_list_label(rule)}: {what}",
                                            [tx_evidence(tx, account, person.id)], matched))
        elif kind == "blackout":
            if tx.kind not in TRADE_KINDS or rule.start is None or rule.end is None:
                return
            if not rule.start <= tx.occurred_at < rule.end or (rule.id, key) in seen:
                return
            assets = rule.params.get("assets") or []
            entries: list[Entry] = []
            listed = tx.asset.upper() in assets or (tx.quote_asset or "").upper() in assets
            if rule.matcher is not None:
                entries = self._match_tx(rule.matcher, account, tx, catalogue)
            if (not assets and rule.matcher is None) or listed or entries:
                out.findings.append(Finding(
                    rule, person.id, tx.connection_id, key, tx.occurred_at,
                    f"Blackout {rule.name!r}: {tx.kind} of {_short(tx.asset, 60)} on {account.label or account.venue}",
                    [tx_evidence(tx, account, person.id)], entries,
                    {"window": {"start": time_text(rule.start), "end": time_text(rule.end)}}))
        elif kind == "threshold":
            on = rule.params.get("on", ())
            what = "trade" if tx.kind in TRADE_KINDS else "transfer" if tx.kind in TRANSFER_KINDS else ""
            if not what or what not in on or (rule.id, key) in seen:
                return
            # The title and the evidence are written only for a record over the threshold (settle).
            out.candidates.append(Candidate(
                rule, person.id, tx.connection_id, key, tx.occurred_at, (tx, account),
                Priced(tx.asset, tx.amount, tx.occurred_at, tx.quote_asset, tx.quote_amount, tx.id), []))
        elif kind == "new_account":
            if tx.kind not in TRANSFER_KINDS or tx.raw is None:
                return
            if rule.params.get("direction") == "outgoing" and tx.kind not in OUTGOING:
                return
            for address in counterparties(tx, account.address.lower()):
                if address in known:
                    continue
                account_key = _key("acct", person.id, address)
                if (rule.id, account_key) in seen:
                    continue
                seen.add((rule.id, account_key))  # later transfers to the same address belong to this alert
                direction = "to" if tx.kind in OUTGOING else "from"
                out.findings.append(Finding(
                    rule, person.id, tx.connection_id, account_key, tx.occurred_at,
                    f"Transfer {direction} an address never connected: {_short(address, 24)} "
                    f"({account.label or account.venue})", [tx_evidence(tx, account, person.id)],
                    extra={"address": address, "direction": direction}))

    @staticmethod
    def _match_tx(matcher: ListMatcher, account: Account, tx: Tx, catalogue: dict[str, tuple[str, str]]
                  ) -> list[Entry]:
        if account.kind == "prediction":
            title, category = title_of(tx, catalogue) if matcher.has_market_entries else ("", "")
            return matcher.match(tx.occurred_at, symbols=(tx.asset,), venue=account.venue, market_id=tx.market,
                                 title=title, category=category)
        contract = f"{account.venue}:{tx.market}" if account.kind == "wallet" and tx.market.startswith("0x") else None
        return matcher.match(tx.occurred_at, symbols=(tx.asset, tx.quote_asset), contract=contract,
                             venue=account.venue)

    # -- holding period ------------------------------------------------------------------------------
    def _holding_period(self, rule: CompiledRule, person: Person, accounts: dict[int, Account],
                        txs: Iterable[Tx]) -> list[Finding]:
        days = int(rule.params.get("days", 30))
        limit = dt.timedelta(days=days)
        only = set(rule.params.get("assets") or ())
        predictions = bool(rule.params.get("include_predictions"))
        lots: dict[str, deque[list[Any]]] = defaultdict(deque)  # asset -> [[tx, remaining], ...] oldest first
        findings = []
        for tx in txs:
            account = accounts.get(tx.connection_id)
            if tx.kind not in TRADE_KINDS or account is None or (account.kind == "prediction" and not predictions):
                continue
            asset = tx.asset.upper()
            if only and asset not in only:
                continue
            if tx.kind == "buy":
                lots[asset].append([tx, abs(tx.amount)])
                continue
            to_sell = abs(tx.amount)
            recent: list[Tx] = []
            queue = lots[asset]
            while to_sell > 0 and queue:
                lot = queue[0]
                used = min(lot[1], to_sell)
                lot[1] -= used
                to_sell -= used
                if tx.occurred_at - lot[0].occurred_at < limit:
                    recent.append(lot[0])
                if lot[1] <= 0:
                    queue.popleft()
            if not recent or (rule.id, f"tx:{tx.id}") in self.seen:
                continue
            newest = max(recent, key=lambda b: b.occurred_at)
            held = tx.occurred_at - newest.occurred_at
            held_days = held.days
            buy_account, sell_account = accounts[newest.connection_id], accounts[tx.connection_id]
            findings.append(Finding(
                rule, person.id, tx.connection_id, _key("tx", tx.id), tx.occurred_at,
                f"Holding period ({days} days): sold {_short(asset, 60)} on {sell_account.label or sell_account.venue} "
                f"{held_days} day(s) after buying it on {buy_account.label or buy_account.venue}",
                [tx_evidence(tx, accounts[tx.connection_id], person.id)]
                + [tx_evidence(b, accounts[b.connection_id], person.id) for b in recent],
                extra={"days": days, "held_seconds": int(held.total_seconds())}))
        return findings

    # -- positions and holdings ------------------------------------------------------------------------
    def _position(self, out: Judgement, rule: CompiledRule, person: Person, account: Account, p: Position) -> None:
        if rule.kind in ("restricted", "watch"):
            if rule.matcher is None or rule.matcher.empty or (rule.id, f"pos:{p.id}") in self.seen:
                return
            entries = rule.matcher.match(p.valid_from, venue=account.venue, market_id=p.market_id,
                                         title=p.market_title, category=p.category)
            if entries:
                out.findings.append(Finding(
                    rule, person.id, p.connection_id, _key("pos", p.id), p.valid_from,
                    f"{_list_label(rule)}: new position in {_short(p.market_title or p.market_id)!r} on "
                    f"{account.label or account.venue}", [position_evidence(p, account, person.id)], entries))
        elif rule.kind == "threshold" and "position" in rule.params.get("on", ()):
            if (rule.id, f"pos:{p.id}") in self.seen:
                return
            if p.avg_price is None:
                amount, quote = p.current_value, "USD" if account.venue == "kalshi" else "USDC"
            else:
                amount, quote = p.size * p.avg_price, "USD" if account.venue == "kalshi" else "USDC"
            priced = Priced(quote, amount if amount is not None else Decimal(0), p.valid_from, quote, amount)
            if amount is None:
                priced = Priced(f"{p.market_id}:{p.outcome}", p.size, p.valid_from)
            out.candidates.append(Candidate(rule, person.id, p.connection_id, _key("pos", p.id), p.valid_from,
                                            f"new position in {_short(p.market_title or p.market_id)!r}", priced,
                                            [position_evidence(p, account, person.id)]))

    def _snapshot(self, out: Judgement, rule: CompiledRule, person: Person, account: Account, s: Snapshot) -> None:
        if rule.kind not in ("restricted", "watch") or rule.matcher is None or rule.matcher.empty:
            return
        if (rule.id, f"bal:{s.id}") in self.seen:
            return
        contract = f"{account.venue}:{s.account}" if account.kind == "wallet" and s.account.startswith("0x") else None
        entries = rule.matcher.match(s.valid_from, symbols=(s.asset,), contract=contract, venue=account.venue)
        if entries:
            out.findings.append(Finding(
                rule, person.id, s.connection_id, _key("bal", s.id), s.valid_from,
                f"{_list_label(rule)}: new holding of {_short(s.asset, 60)} on {account.label or account.venue}",
                [snapshot_evidence(s, account, person.id)], entries))


def settle(candidates: Sequence[Candidate], valuations: Sequence[Valuation]) -> tuple[list[Finding], list[Unvalued],
                                                                                      list[tuple[int, str]]]:
    """Threshold candidates with their values: findings over the threshold, the records that could not be
    valued, and (rule id, record key) of those valued (a record valued now that could not be before)."""
    findings: list[Finding] = []
    unvalued: list[Unvalued] = []
    valued: list[tuple[int, str]] = []
    for candidate, valuation in zip(candidates, valuations, strict=True):
        rule = candidate.rule
        if valuation.value is None:
            unvalued.append(Unvalued(rule.id, candidate.employee_id, candidate.record_key,
                                     valuation.reason[:300] or "could not be valued"))
            continue
        valued.append((rule.id, candidate.record_key))
        limit = Decimal(str(rule.params.get("value", "0")))
        if valuation.value > limit:
            currency = valuation.currency
            what, records = candidate.what, candidate.records
            if isinstance(what, tuple):
                tx, account = what
                what = f"{tx.kind.replace('_', ' ')} of {_short(tx.asset, 60)} on {account.label or account.venue}"
                records = [tx_evidence(tx, account, candidate.employee_id)]
            findings.append(Finding(
                rule, candidate.employee_id, candidate.connection_id, candidate.record_key, candidate.occurred_at,
                f"Threshold {rule.name!r}: {what} worth over {decimal_to_text(limit)} {currency}",
                records, extra={"value": decimal_to_text(valuation.value), "currency": currency,
                                          "threshold": decimal_to_text(limit), "value_source": valuation.source}))
    return findings, unvalued, valued
