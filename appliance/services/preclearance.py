"""Pre-clearance: an employee asks before trading; the rules decide at once where they can, a Compliance
user decides the rest; the approval then holds for a window and a quantity.

The decision, in order:
1. denied automatically when an enabled rule that applies to the employee forbids it: a restricted list
   naming the asset, the market or the venue; a blackout window that overlaps the approval's window; a
   holding period a sell would break (a buy of the asset less than N days ago on any of the employee's
   accounts). The employee is told the rule's name and kind, never a list entry's confidential note;
2. approved automatically when ``preclearance.auto_approve`` is on and the request meets every condition
   configured (the employee's groups, the kind of request, a value below ``auto_approve_below`` in the
   base currency: the notional asked, or the quantity at the current price; a request that cannot be
   valued is not approved automatically);
3. otherwise pending for a Compliance user, who approves or denies it with a comment.

An approval is valid from its decision until the end of ``window_business_days`` business days after the
decision day in the firm's time zone (default: the end of the next business day; weekends and
``holidays`` are not business days), for the requested quantity (or notional) plus ``tolerance_percent``.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.errors import Conflict, Invalid, NotFound
from appliance.rbac.actors import Actor
from appliance.services.rules import facts
from appliance.services.rules.catalogue import LABELS, list_rules
from appliance.services.rules.evaluate import compile_rules
from appliance.services.rules.groups import groups_of
from appliance.services.rules.judge import CompiledRule
from appliance.services.rules.matching import SYMBOL
from appliance.settings import VENUE_IDS, Settings
from appliance.store.base import utcnow
from appliance.store.models import Connection, Employee, EmployeeGroup, PreclearanceRequest, Transaction

STATUSES = ("pending", "approved", "denied")
SIDES = {"asset": ("buy", "sell"), "market": ("yes", "no")}
MARKET_VENUES = ("polymarket", "kalshi")
MAX_REASON = 2000
MARKET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,199}$")
FIELDS = frozenset({"employee_id", "asset", "market_id", "market_choice", "venue", "side", "quantity", "notional",
                    "reason"})
POLYMARKET_HOSTS = ("polymarket.com", "www.polymarket.com")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,199}$")


@dataclass(frozen=True)
class Ask:
    """A request as validated from its body (the API, the portal form, a test)."""

    kind: str
    asset: str
    market_id: str
    venue: str
    side: str
    quantity: Decimal | None
    notional: Decimal | None
    reason: str
    # A polymarket.com URL names a slug (an event's or a market's), resolved to a condition id by resolve().
    slug: str = ""
    slug_kind: str = ""  # event | market
    choice: str = ""  # which market of an event (its condition id or slug), when it has several


def _amount(value: Any, field: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Invalid(f"{field} must be a positive number, e.g. \"1.5\"", field=field)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise Invalid(f"{field} must be a positive number, e.g. \"1.5\"", field=field) from None
    if not number.is_finite() or number <= 0 or number > Decimal("1e18"):
        raise Invalid(f"{field} must be a positive number, e.g. \"1.5\"", field=field)
    return number


def _market(value: str, venue: str) -> tuple[str, str, str, str]:
    """A market id, or a Kalshi URL (its last path segment), or a Polymarket URL (the slug it names, resolved
    later by :func:`resolve`); the venue from the URL's host. Returns (market id, venue, slug, slug kind)."""
    text = value.strip()
    if text.lower().startswith(("https://", "http://")):
        parts = urlsplit(text)
        host = (parts.hostname or "").lower()
        found = next((v for v in MARKET_VENUES if host == f"{v}.com" or host.endswith(f".{v}.com")), "")
        segments = [s for s in parts.path.split("/") if s]
        if not found or not segments or parts.username or parts.password or parts.port:
            raise Invalid("market_id: a market id, or a polymarket.com or kalshi.com market URL", field="market_id")
        if venue and venue != found:
            raise Invalid(f"market_id is a {found} URL but venue is {venue}", field="venue")
        if found == "polymarket":
            slug, kind = _polymarket_slug(host, segments)
            return "", found, slug, kind
        return segments[-1].upper(), found, "", ""
    if not MARKET_ID.match(text):
        raise Invalid("market_id: a market id (letters, digits, . _ : -) or a market URL", field="market_id")
    return text, venue, "", ""


def _polymarket_slug(host: str, segments: list[str]) -> tuple[str, str]:
    """polymarket.com/event/<event>[/<market>] or /market/<market>: the most precise slug and its kind."""
    if host not in POLYMARKET_HOSTS:
        raise Invalid("market_id: a Polymarket URL is on polymarket.com", field="market_id")
    if segments[0] == "event" and len(segments) in (2, 3):
        slug, kind = (segments[2], "market") if len(segments) == 3 else (segments[1], "event")
    elif segments[0] == "market" and len(segments) == 2:
        slug, kind = segments[1], "market"
    else:
        raise Invalid("market_id: a Polymarket URL looks like https://polymarket.com/event/<name> (or "
                      "/event/<name>/<market>)", field="market_id")
    if not SLUG.match(slug):
        raise Invalid("market_id: the URL's market name is not a Polymarket slug (lower-case letters, digits, "
                      "dashes)", field="market_id")
    return slug, kind


def parse(data: dict[str, Any]) -> Ask:
    """Strict: unknown fields, a missing side, neither or both of asset and market_id are refused by name."""
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise Invalid(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(FIELDS))})", field=unknown[0])
    asset = data.get("asset") or ""
    market = data.get("market_id") or ""
    venue = data.get("venue") or ""
    if not isinstance(asset, str) or not isinstance(market, str) or not isinstance(venue, str):
        raise Invalid("asset, market_id and venue are text", field="asset")
    if bool(asset.strip()) == bool(market.strip()):
        raise Invalid("give either asset (e.g. \"BTC\") or market_id (a prediction market's id or URL)",
                      field="asset")
    venue = venue.strip().lower()
    if venue and venue not in VENUE_IDS and venue != "bitcoin":
        raise Invalid(f"venue: unknown venue {venue!r} (known: {', '.join(VENUE_IDS)})", field="venue")
    kind = "asset" if asset.strip() else "market"
    if kind == "asset":
        asset = asset.strip().upper()
        if not SYMBOL.match(asset):
            raise Invalid("asset must be an asset symbol, e.g. BTC", field="asset")
        market_id = ""
    else:
        market_id, venue, slug, slug_kind = _market(market, venue)
        if venue not in MARKET_VENUES:
            raise Invalid(f"a prediction market request names its venue ({' or '.join(MARKET_VENUES)})",
                          field="venue")
    side = data.get("side")
    if side not in SIDES[kind]:
        raise Invalid(f"side must be {' or '.join(SIDES[kind])} for {'an asset' if kind == 'asset' else 'a market'}",
                      field="side")
    quantity = _amount(data.get("quantity"), "quantity")
    notional = _amount(data.get("notional"), "notional")
    if (quantity is None) == (notional is None):
        raise Invalid("give either quantity (units or contracts) or notional (in the base currency)",
                      field="quantity")
    reason = data.get("reason") or ""
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise Invalid(f"reason is text of at most {MAX_REASON} characters", field="reason")
    choice = data.get("market_choice") or ""
    if not isinstance(choice, str) or len(choice) > 200:
        raise Invalid("market_choice is a market's condition id or slug", field="market_choice")
    if kind == "asset":
        return Ask(kind, asset, market_id, venue, str(side), quantity, notional, reason.strip())
    return Ask(kind, asset, market_id, venue, str(side), quantity, notional, reason.strip(), slug, slug_kind,
               choice.strip())


# -- windows ----------------------------------------------------------------------------------------------

def window_end(settings: Settings, decided_at: dt.datetime) -> dt.datetime:
    """The end of the approval's last business day in the firm's time zone, in UTC."""
    pc = settings.preclearance
    zone = zoneinfo.ZoneInfo(pc.time_zone)
    holidays = {dt.date.fromisoformat(d) for d in pc.holidays}
    day = decided_at.astimezone(zone).date()
    remaining = pc.window_business_days
    while remaining > 0:
        day += dt.timedelta(days=1)
        if day.weekday() < 5 and day not in holidays:
            remaining -= 1
    next_midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    return next_midnight.astimezone(dt.UTC) - dt.timedelta(microseconds=1)


# -- the automatic decision ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    status: str
    reason: str
    rule_id: int | None = None


def _rule_words(rule: CompiledRule) -> str:
    return f"the rule “{rule.name}” ({LABELS.get(rule.kind, rule.kind).lower()})"


def _denial(session: Session, employee_id: int, ask: Ask, now: dt.datetime, until: dt.datetime) -> Verdict | None:
    person = facts.people(session, [employee_id]).get(employee_id)
    if person is None:
        raise NotFound("not found")
    for rule in compile_rules(session, list_rules(session, enabled_only=True)):
        if not rule.applies(person):
            continue
        symbols = [ask.asset] if ask.asset else []
        if rule.kind == "restricted" and rule.matcher is not None:
            if rule.matcher.match(now, symbols=symbols, venue=ask.venue or None, market_id=ask.market_id or None):
                return Verdict("denied", f"Denied by {_rule_words(rule)}: this is on a restricted list.", rule.id)
        elif rule.kind == "blackout" and rule.start is not None and rule.end is not None:
            if rule.start <= until and now <= rule.end and _blackout_covers(rule, ask, now):
                return Verdict("denied", f"Denied by {_rule_words(rule)}: no trading in this from "
                               f"{rule.start:%Y-%m-%d %H:%M} to {rule.end:%Y-%m-%d %H:%M} UTC.", rule.id)
        elif rule.kind == "holding_period" and ask.kind == "asset" and ask.side == "sell":
            assets = rule.params.get("assets") or []
            if assets and ask.asset not in assets:
                continue
            days = int(rule.params.get("days", 30))
            if _bought_since(session, employee_id, ask.asset, now - dt.timedelta(days=days)):
                return Verdict("denied", f"Denied by {_rule_words(rule)}: {ask.asset} was bought less than {days} "
                               "days ago.", rule.id)
    return None


def _blackout_covers(rule: CompiledRule, ask: Ask, now: dt.datetime) -> bool:
    assets = rule.params.get("assets") or []
    if not assets and rule.params.get("list_id") is None:
        return True
    if ask.asset and ask.asset in assets:
        return True
    return rule.matcher is not None and bool(rule.matcher.match(
        now, symbols=[ask.asset] if ask.asset else [], venue=ask.venue or None, market_id=ask.market_id or None))


def _bought_since(session: Session, employee_id: int, asset: str, since: dt.datetime) -> bool:
    return session.execute(select(Transaction.id).join(Connection, Connection.id == Transaction.connection_id).where(
        Connection.employee_id == employee_id, Transaction.kind == "buy", Transaction.asset == asset,
        Transaction.occurred_at >= since, Transaction.orphaned.is_(False)).limit(1)).first() is not None


def _value(session: Session, settings: Settings, ask: Ask) -> Decimal | None:
    if ask.notional is not None:
        return ask.notional
    if ask.kind != "asset" or ask.quantity is None:
        return None
    from appliance.services.valuation.read import PriceTable

    return PriceTable(session, settings, [ask.asset]).value(ask.asset, ask.quantity).value


def _auto_approval(session: Session, settings: Settings, employee_id: int, ask: Ask) -> Verdict | None:
    pc = settings.preclearance
    if not pc.auto_approve or ask.kind not in pc.auto_approve_kinds:
        return None
    if pc.auto_approve_groups:
        names = set(session.execute(select(EmployeeGroup.name).where(
            EmployeeGroup.id.in_(groups_of(session, [employee_id]).get(employee_id, frozenset())))).scalars())
        if not names.intersection(pc.auto_approve_groups):
            return None
    if pc.auto_approve_below:
        value = _value(session, settings, ask)
        if value is None or value >= Decimal(pc.auto_approve_below):
            return None
    return Verdict("approved", "Approved automatically: no rule forbids it and it is within the firm's limits "
                               "for automatic approval.")


# -- use cases ----------------------------------------------------------------------------------------------

def submit(session: Session, settings: Settings, actor: Actor, employee_id: int, ask: Ask, *, via: str
           ) -> PreclearanceRequest:
    """Record the request and decide it at once where the rules and the configuration can."""
    employee = session.get(Employee, employee_id)
    if employee is None:
        raise Invalid(f"no employee with id {employee_id}", field="employee_id")
    if employee.status != "active":
        raise Conflict("this employee is offboarded")
    now = utcnow()
    until = window_end(settings, now)
    verdict = _denial(session, employee_id, ask, now, until) or _auto_approval(session, settings, employee_id, ask) \
        or Verdict("pending", "Waiting for a compliance reviewer.")
    row = PreclearanceRequest(
        employee_id=employee_id, kind=ask.kind, asset=ask.asset, market_id=ask.market_id, venue=ask.venue,
        side=ask.side, quantity=ask.quantity, notional=ask.notional,
        currency=settings.valuation.currency if ask.notional is not None else "", reason=ask.reason,
        submitted_via=via, submitted_by=actor.user_id, created_at=now, status=verdict.status,
        decision_reason=verdict.reason, rule_id=verdict.rule_id,
        tolerance_percent=Decimal(settings.preclearance.tolerance_percent))
    if verdict.status != "pending":
        row.decided_how, row.decided_at, row.decided_label = "auto", now, "automatic"
    if verdict.status == "approved":
        row.valid_from, row.expires_at = now, until
    session.add(row)
    session.flush()
    return row


def decide(session: Session, settings: Settings, actor: Actor, request_id: int, *, approve: Any, comment: Any
           ) -> PreclearanceRequest:
    if not isinstance(approve, bool):
        raise Invalid("approve must be true or false", field="approve")
    if not isinstance(comment, str) or not comment.strip():
        raise Invalid("comment is required: say why (the employee reads it)", field="comment")
    if len(comment) > MAX_REASON:
        raise Invalid(f"comment is at most {MAX_REASON} characters", field="comment")
    row = session.get(PreclearanceRequest, request_id, with_for_update=True)
    if row is None:
        raise NotFound("not found")
    if row.status != "pending":
        raise Conflict(f"this request was already decided ({row.status})")
    now = utcnow()
    row.status = "approved" if approve else "denied"
    row.decided_how, row.decided_by, row.decided_label, row.decided_at = "reviewer", actor.user_id, actor.label, now
    row.comment = comment.strip()
    row.decision_reason = "Approved by compliance." if approve else "Denied by compliance."
    if approve:
        row.valid_from, row.expires_at = now, window_end(settings, now)
    session.flush()
    return row


def get(session: Session, request_id: int) -> PreclearanceRequest:
    row = session.get(PreclearanceRequest, request_id)
    if row is None:
        raise NotFound("not found")
    return row


def listing(session: Session, *, status: str | None = None, employee_id: int | None = None, limit: int = 500
            ) -> list[PreclearanceRequest]:
    """The queue (``status="pending"``, oldest first) or the history (newest first), per employee or all."""
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}", field="status")
    stmt = select(PreclearanceRequest)
    if status is not None:
        stmt = stmt.where(PreclearanceRequest.status == status)
    if employee_id is not None:
        stmt = stmt.where(PreclearanceRequest.employee_id == employee_id)
    order = PreclearanceRequest.id.asc() if status == "pending" else PreclearanceRequest.id.desc()
    return list(session.execute(stmt.order_by(order).limit(limit)).scalars())


def notify_decision(session: Session, mailer: Any, settings: Settings, row: PreclearanceRequest) -> None:
    """E-mail the employee the decision (queued in the caller's unit of work; sent after its commit).
    The message names the request and the outcome; the details are on the portal."""
    if row.status == "pending":
        return
    employee = session.get(Employee, row.employee_id)
    if employee is None or not employee.email:
        return
    from appliance.services.portal import portal_url

    what = row.asset or f"{row.venue} market {row.market_id}"
    lines = [f"Your pre-clearance request #{row.id} ({row.side} {what}) was {row.status}.", "", row.decision_reason]
    if row.comment:
        lines += ["", f"Comment: {row.comment}"]
    if row.status == "approved" and row.expires_at is not None:
        lines += ["", f"The approval is valid until {row.expires_at:%Y-%m-%d %H:%M} UTC for the quantity you asked "
                      f"plus {row.tolerance_percent.normalize()} %."]
    lines += ["", f"Details on your page: {portal_url(settings)}/me"]
    mailer.queue(session, to=[employee.email], subject=f"Pre-clearance request #{row.id}: {row.status}",
                 text="\n".join(lines) + "\n", purpose="preclearance")
