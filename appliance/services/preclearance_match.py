"""Post-trade matching: each synced trade and each new prediction position against the employee's
approvals, and the ``preclearance_required`` rules over the outcome.

What is matched (once per record, in the unit of work that evaluates a sync, before the evaluation mark
moves on — so a record is matched exactly when it is first evaluated):
- on exchanges and wallets, every buy and sell transaction: against approved asset requests for the same
  asset and side (and venue, when the request named one);
- on prediction markets, every new position or increase of one (the size it added): against approved
  market requests for the same venue, market id and outcome (yes/no). Fills of those venues are not
  matched separately, so a position is never counted twice.

The outcome, recorded on the record (``preclearance_matches``):
- ``matched`` (with the request): inside an approval's window (``valid_from`` to ``expires_at``) and,
  with the earlier matched records of that approval, within its quantity plus the tolerance (a notional
  approval compares the trade's value at its own time: :func:`trade_notional`);
- ``over_quantity`` (with the request): inside a window, but over what is left of every approval;
- ``outside_window`` (with the request): approvals exist for it, but none valid at the record's time;
- ``no_request``: none at all (pending or denied requests approve nothing);
- ``unvalued`` (with the request): the only approvals in their window are notional ones and the record has
  no value at its time, so whether it stays within them cannot be told. Never counted as zero, never
  ``matched``: it is kept for review, and the ``preclearance_required`` rule raises an alert for it.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from appliance.services.rules.catalogue import ALERT_KIND, list_rules
from appliance.services.rules.common import Audience
from appliance.services.rules.facts import transactions_after
from appliance.services.rules.groups import groups_of
from appliance.settings import Settings
from appliance.store.base import utcnow
from appliance.store.models import (
    Alert,
    AlertEvent,
    AlertEvidence,
    Connection,
    Employee,
    EvaluationMark,
    PreclearanceMatch,
    PreclearanceRequest,
    PredictionPosition,
    PriceObservation,
    Rule,
    Transaction,
    TransactionValue,
)

TRADES = ("buy", "sell")
EXCEPTIONS = ("no_request", "over_quantity", "outside_window", "unvalued")
TITLES = {"no_request": "without pre-clearance", "over_quantity": "over the pre-cleared quantity",
          "outside_window": "outside the pre-clearance window",
          "unvalued": "against a notional pre-clearance, with no value at its time"}
# How far from a trade a stored price of its pair may be to value it at its time.
PRICE_AT_TRADE = dt.timedelta(hours=1)


def _limit(request: PreclearanceRequest) -> Decimal:
    amount = request.quantity if request.quantity is not None else request.notional
    return (amount or Decimal(0)) * (Decimal(100) + request.tolerance_percent) / Decimal(100)


# Built once: matching runs after every sync that stored something.
@functools.cache
def _approved_statement() -> Any:
    return select(PreclearanceRequest).where(PreclearanceRequest.employee_id == bindparam("employee"),
                                             PreclearanceRequest.status == "approved").order_by(PreclearanceRequest.id)


@functools.cache
def _new_trades_statement() -> Any:
    return select(Transaction).where(
        Transaction.connection_id == bindparam("connection"), Transaction.id > bindparam("since"),
        Transaction.kind.in_(TRADES), Transaction.orphaned.is_(False)).order_by(Transaction.occurred_at, Transaction.id)


class _Book:
    """The employee's approvals, read once per sync, and what each has used so far (units, or base
    currency for a notional approval): read on first need, then kept up to date as this sync matches."""

    def __init__(self, session: Session, employee_id: int,
                 approved: Sequence[PreclearanceRequest] | None = None) -> None:
        self.session = session
        self.approved = list(approved) if approved is not None else list(
            session.execute(_approved_statement(), {"employee": employee_id}).scalars())
        self._used: dict[int, Decimal] = {}

    def used(self, request_id: int) -> Decimal:
        if request_id not in self._used:
            total = Decimal(0)
            for (value,) in self.session.execute(select(PreclearanceMatch.quantity).where(
                    PreclearanceMatch.request_id == request_id, PreclearanceMatch.status == "matched")):
                total += Decimal(value)
            self._used[request_id] = total
        return self._used[request_id]

    def take(self, request_id: int, amount: Decimal) -> None:
        self._used[request_id] = self.used(request_id) + amount


def trade_notional(session: Session, settings: Settings, tx: Transaction) -> Decimal | None:
    """The trade's value in the base currency at its own time, or None when nothing tells it: its quote
    amount when quoted in the base currency, else its stored value (the pricing job's), else its amount times
    the stored price of its pair (asset/base currency) nearest to its time within PRICE_AT_TRADE."""
    currency = settings.valuation.currency
    if tx.quote_asset and tx.quote_asset.upper() == currency and tx.quote_amount is not None:
        return abs(tx.quote_amount)
    stored = session.get(TransactionValue, (tx.id, currency))
    if stored is not None and stored.value is not None:
        return abs(stored.value)
    price = _price_near(session, tx.asset.upper(), currency, tx.occurred_at)
    return abs(tx.amount) * price if price is not None else None


def _price_near(session: Session, asset: str, currency: str, at: dt.datetime) -> Decimal | None:
    window = (PriceObservation.asset == asset, PriceObservation.currency == currency)
    before = session.execute(select(PriceObservation.at, PriceObservation.price).where(
        *window, PriceObservation.at <= at, PriceObservation.at >= at - PRICE_AT_TRADE).order_by(
        PriceObservation.at.desc()).limit(1)).first()
    after = session.execute(select(PriceObservation.at, PriceObservation.price).where(
        *window, PriceObservation.at > at, PriceObservation.at <= at + PRICE_AT_TRADE).order_by(
        PriceObservation.at).limit(1)).first()
    found = [row for row in (before, after) if row is not None]
    if not found:
        return None
    nearest = min(found, key=lambda row: abs(row[0] - at))
    return Decimal(nearest[1])


def _decide(book: _Book, candidates: Sequence[PreclearanceRequest], at: dt.datetime,
            amount_for: Any) -> tuple[str, int | None, Decimal]:
    """The outcome for one record, given the approvals for the same thing (oldest first). ``amount_for``
    gives what the record counts against a request (None: a notional request and no value at its time)."""
    units = amount_for(None)
    if not candidates:
        return "no_request", None, units
    in_window = [r for r in candidates if r.valid_from is not None and r.expires_at is not None
                 and r.valid_from <= at <= r.expires_at]
    unvalued: PreclearanceRequest | None = None
    for request in in_window:
        amount = amount_for(request)
        if amount is None:
            unvalued = unvalued or request
            continue
        if book.used(request.id) + amount <= _limit(request):
            book.take(request.id, amount)
            return "matched", request.id, amount
    if unvalued is not None:
        return "unvalued", unvalued.id, units  # never counted as zero against the notional
    if in_window:
        return "over_quantity", in_window[0].id, amount_for(in_window[0])
    last = amount_for(candidates[-1])
    return "outside_window", candidates[-1].id, last if last is not None else units


def match_connection(session: Session, settings: Settings, connection_id: int) -> list[PreclearanceMatch]:
    """Match the records the connection stored since its evaluation mark; returns the new outcomes."""
    connection = session.get(Connection, connection_id)
    if connection is None:
        return []
    mark = session.get(EvaluationMark, connection_id)
    since_tx = mark.transaction_id if mark is not None else 0
    since_pos = mark.position_id if mark is not None else 0
    book = _Book(session, connection.employee_id)
    if connection.kind == "prediction":
        out = _match_positions(session, book, connection, since_pos)
    else:
        out = _match_trades(session, settings, book, connection, since_tx)
    session.add_all(out)
    session.flush()
    return out


def match_connections(session: Session, settings: Settings, connection_ids: Sequence[int]
                      ) -> list[PreclearanceMatch]:
    """``match_connection`` for several connections (a polling cycle's), with the connections, their marks
    and their owners' approvals read once; an employee's approvals are one book across their connections."""
    ids = sorted(set(connection_ids))
    connections: list[Connection] = []
    marks: dict[int, EvaluationMark] = {}
    for start in range(0, len(ids), 900):
        part = ids[start:start + 900]
        connections += session.execute(select(Connection).where(Connection.id.in_(part)).order_by(
            Connection.id)).scalars()
        marks.update({m.connection_id: m for m in session.execute(select(EvaluationMark).where(
            EvaluationMark.connection_id.in_(part))).scalars()})
    employees = sorted({c.employee_id for c in connections})
    approved: dict[int, list[PreclearanceRequest]] = {e: [] for e in employees}
    for start in range(0, len(employees), 900):
        for request in session.execute(select(PreclearanceRequest).where(
                PreclearanceRequest.employee_id.in_(employees[start:start + 900]),
                PreclearanceRequest.status == "approved").order_by(PreclearanceRequest.id)).scalars():
            approved[request.employee_id].append(request)
    books = {e: _Book(session, e, approved[e]) for e in employees}
    trades = transactions_after(session, {c.id: marks[c.id].transaction_id if c.id in marks else 0
                                          for c in connections if c.kind != "prediction"}, kinds=TRADES, orm=True)
    out: list[PreclearanceMatch] = []
    for connection in connections:
        mark = marks.get(connection.id)
        book = books[connection.employee_id]
        if connection.kind == "prediction":
            out += _match_positions(session, book, connection, mark.position_id if mark is not None else 0)
        else:
            out += _match_trades(session, settings, book, connection, 0, trades[connection.id])
    session.add_all(out)
    session.flush()
    return out


def _match_trades(session: Session, settings: Settings, book: _Book, connection: Connection, since: int,
                  rows: Sequence[Transaction] | None = None) -> list[PreclearanceMatch]:
    """The connection's trades after ``since`` (or ``rows``, read already) against the approvals."""
    if rows is None:
        rows = list(session.execute(_new_trades_statement(), {"connection": connection.id, "since": since}).scalars())
    out = []
    for tx in rows:
        asset = tx.asset.upper()
        candidates = [r for r in book.approved if r.kind == "asset" and r.asset == asset and r.side == tx.kind
                      and (not r.venue or r.venue == connection.venue)]

        def amount_for(request: PreclearanceRequest | None, tx: Transaction = tx) -> Decimal | None:
            if request is not None and request.quantity is None:
                return trade_notional(session, settings, tx)
            return abs(tx.amount)

        status, request_id, amount = _decide(book, candidates, tx.occurred_at, amount_for)
        out.append(_record("transaction", tx.id, connection, tx.occurred_at, amount, status, request_id))
    return out


def _match_positions(session: Session, book: _Book, connection: Connection, since: int) -> list[PreclearanceMatch]:
    rows = list(session.execute(select(PredictionPosition).where(
        PredictionPosition.connection_id == connection.id, PredictionPosition.id > since).order_by(
        PredictionPosition.id)).scalars())
    out = []
    for position in rows:
        previous = session.execute(select(PredictionPosition.size).where(
            PredictionPosition.connection_id == connection.id, PredictionPosition.market_id == position.market_id,
            PredictionPosition.outcome == position.outcome, PredictionPosition.id < position.id).order_by(
            PredictionPosition.id.desc()).limit(1)).scalar_one_or_none()
        added = position.size - (previous or Decimal(0))
        if added <= 0:
            continue  # a position that shrank or stayed: nothing was bought
        side = position.outcome.strip().lower()
        market = position.market_id.lower()
        candidates = [r for r in book.approved if r.kind == "market" and r.venue == connection.venue
                      and r.side == side and r.market_id.lower() == market]

        def amount_for(request: PreclearanceRequest | None, added: Decimal = added,
                       position: PredictionPosition = position) -> Decimal | None:
            if request is not None and request.quantity is None:
                return added * position.avg_price if position.avg_price is not None else None
            return added

        status, request_id, amount = _decide(book, candidates, position.valid_from, amount_for)
        out.append(_record("position", position.id, connection, position.valid_from, amount, status, request_id))
    return out


def _record(record_type: str, record_id: int, connection: Connection, at: dt.datetime, quantity: Decimal,
            status: str, request_id: int | None) -> PreclearanceMatch:
    return PreclearanceMatch(record_type=record_type, record_id=record_id, connection_id=connection.id,
                             employee_id=connection.employee_id, occurred_at=at, quantity=quantity, status=status,
                             request_id=request_id, matched_at=utcnow())


# -- the preclearance_required rule ----------------------------------------------------------------------

def raise_alerts(session: Session, settings: Settings, matches: Sequence[PreclearanceMatch],
                 rules: Sequence[Rule] | None = None) -> list[int]:
    """Alerts of the enabled preclearance_required rules for outcomes other than ``matched`` (one per rule
    and record), with the record and the request as evidence. Returns the new alerts' ids."""
    exceptions = [m for m in matches if m.status in EXCEPTIONS]
    if not exceptions:
        return []
    if rules is None:
        rules = [r for r in list_rules(session, enabled_only=True) if r.kind == "preclearance_required"]
    if not rules:
        return []
    employees = {m.employee_id for m in exceptions}
    people = {e.id: e for e in session.execute(select(Employee).where(Employee.id.in_(employees))).scalars()}
    groups = groups_of(session, employees)
    created: list[int] = []
    for rule in rules:
        audience = Audience.of(rule.applies_to)
        for match in exceptions:
            person = people.get(match.employee_id)
            if person is None or not audience.includes(person.department, groups.get(person.id, frozenset())):
                continue
            if match.occurred_at < rule.created_at:
                continue  # nothing could have been pre-cleared under a rule that did not exist yet
            alert_id = _alert(session, settings, rule, match)
            if alert_id is not None:
                created.append(alert_id)
    return created


def _alert(session: Session, settings: Settings, rule: Rule, match: PreclearanceMatch) -> int | None:
    params = rule.params or {}
    key = f"preclearance:{match.record_type}:{match.record_id}"
    if session.execute(select(Alert.id).where(Alert.rule_id == rule.id, Alert.record_key == key)).first():
        return None
    connection = session.get(Connection, match.connection_id)
    venue = connection.label or connection.venue if connection is not None else "?"
    if match.record_type == "transaction":
        tx = session.get(Transaction, match.record_id)
        if tx is None:
            return None
        if tx.asset.upper() in (params.get("exempt_assets") or []):
            return None
        if params.get("exempt_below"):
            value = trade_notional(session, settings, tx)
            if value is not None and value < Decimal(params["exempt_below"]):
                return None  # an unvalued trade is not exempt: it is judged
        what = f"{tx.kind} of {tx.asset} on {venue}"
        record = {"type": "transaction", "id": tx.id, "kind": tx.kind, "asset": tx.asset,
                  "occurred_at": tx.occurred_at.isoformat()}
    else:
        if not params.get("include_predictions", True):
            return None
        position = session.get(PredictionPosition, match.record_id)
        if position is None:
            return None
        what = f"{position.outcome} position in {position.market_title or position.market_id} on {venue}"
        record = {"type": "position", "id": position.id, "market_id": position.market_id,
                  "outcome": position.outcome, "occurred_at": position.valid_from.isoformat()}
    now = utcnow()
    title = f"{rule.name}: {what} {TITLES[match.status]}"
    if match.request_id is not None:
        title += f" (request #{match.request_id})"
    alert = Alert(kind=ALERT_KIND[rule.kind], severity=rule.severity, status="open", title=title[:300],
                  employee_id=match.employee_id, connection_id=match.connection_id, rule_id=rule.id,
                  rule_version=rule.version, record_key=key, occurred_at=match.occurred_at, created_at=now,
                  updated_at=now, detail={"rule": {"id": rule.id, "name": rule.name, "kind": rule.kind,
                                                   "version": rule.version},
                                          "preclearance": {"status": match.status, "request_id": match.request_id},
                                          "records": [record]})
    session.add(alert)
    session.flush()
    session.add(AlertEvent(alert_id=alert.id, at=now, actor_id=None, actor_label=f"rule: {rule.name}"[:200],
                           action="created", detail={"rule_id": rule.id}))
    label = f"rule: {rule.name}"[:200]
    session.add(AlertEvidence(alert_id=alert.id, type=match.record_type, ref_id=match.record_id,
                              note="the record", added_label=label))
    if match.request_id is not None:
        session.add(AlertEvidence(alert_id=alert.id, type="preclearance", ref_id=match.request_id,
                                  note=f"pre-clearance request #{match.request_id}", added_label=label))
    session.flush()
    return alert.id


def evaluate_rule(session: Session, settings: Settings, rule: Rule) -> list[int]:
    """A new or changed preclearance_required rule over the outcomes already recorded since it exists."""
    rows = list(session.execute(select(PreclearanceMatch).where(
        PreclearanceMatch.status.in_(EXCEPTIONS), PreclearanceMatch.occurred_at >= rule.created_at)).scalars())
    return raise_alerts(session, settings, rows, [rule])


def outcomes_of(session: Session, record_type: str, ids: Sequence[int]) -> dict[int, PreclearanceMatch]:
    out: dict[int, PreclearanceMatch] = {}
    for start in range(0, len(ids), 900):
        for row in session.execute(select(PreclearanceMatch).where(
                PreclearanceMatch.record_type == record_type,
                PreclearanceMatch.record_id.in_(list(ids[start:start + 900])))).scalars():
            out[row.record_id] = row
    return out

