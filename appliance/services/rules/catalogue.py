"""The rules: their kinds, their parameters (validated strictly), and every change versioned.

| kind | params | alert kind, severity |
| --- | --- | --- |
| restricted | ``{"list_id"}`` (a restricted list) | rule_breach, critical |
| watch | ``{"list_id"}`` (a watch list) | watch, info |
| holding_period | ``{"days": 30, "assets"?: [...], "include_predictions"?: false}`` | rule_breach, warning |
| blackout | ``{"start", "end", "assets"?: [...], "list_id"?}`` (neither: every asset) | rule_breach, critical |
| threshold | ``{"value", "on"?: [...]}`` (trade, transfer, position, holding), base currency | rule_breach, warning |
| new_account | ``{"direction"?: "both" or "outgoing"}`` | watch, info |
| preclearance_required | ``{"exempt_below"?, "exempt_assets"?, "include_predictions"?}`` | rule_breach, warning |

A preclearance_required rule judges the outcome post-trade matching recorded for each trade and new
prediction position (services/preclearance_match.py) — no request, over the approved quantity, outside
the window — for records from the rule's creation on (nothing could have been cleared under it before).

Severities of the last four can be set per rule; restricted is always critical and watch always info.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.errors import Conflict, Invalid, NotFound
from appliance.rbac.actors import Actor
from appliance.services.rules.common import clean_applies_to, clean_name, parse_time, record_change, time_text
from appliance.services.rules.matching import SYMBOL
from appliance.store.base import utcnow
from appliance.store.models import ConductList, Rule

KINDS = ("restricted", "watch", "holding_period", "blackout", "threshold", "new_account", "preclearance_required")
SEVERITIES = ("info", "warning", "critical")
DEFAULT_SEVERITY = {"restricted": "critical", "watch": "info", "holding_period": "warning", "blackout": "critical",
                    "threshold": "warning", "new_account": "info", "preclearance_required": "warning"}
FIXED_SEVERITY = frozenset({"restricted", "watch"})
ALERT_KIND = {"restricted": "rule_breach", "holding_period": "rule_breach", "blackout": "rule_breach",
              "threshold": "rule_breach", "watch": "watch", "new_account": "watch",
              "preclearance_required": "rule_breach"}
THRESHOLD_ON = ("trade", "transfer", "position", "holding")
LABELS = {"restricted": "Restricted list", "watch": "Watch list", "holding_period": "Holding period",
          "blackout": "Blackout window", "threshold": "Value threshold", "new_account": "Undisclosed account",
          "preclearance_required": "Pre-clearance required"}


def _int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"params.{field} must be a whole number from {low} to {high}", field=f"params.{field}")
    return value


def _assets(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(a, str) and SYMBOL.match(a.strip()) for a in value):
        raise Invalid("params.assets must be a list of asset symbols, e.g. [\"BTC\", \"ACME\"]", field="params.assets")
    if len(value) > 1000:
        raise Invalid("params.assets: at most 1000 symbols", field="params.assets")
    return sorted({a.strip().upper() for a in value})


def _list_ref(session: Session, value: Any, kind: str | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("params.list_id must be the id of a list", field="params.list_id")
    found = session.get(ConductList, value)
    if found is None:
        raise Invalid(f"params.list_id: no list {value}", field="params.list_id")
    if kind is not None and found.kind != kind:
        raise Invalid(f"params.list_id: a {kind} rule reads a {kind} list; {found.name!r} is a {found.kind} list",
                      field="params.list_id")
    return found.id


def clean_params(session: Session, kind: str, params: Any) -> dict[str, Any]:
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise Invalid("params must be an object", field="params")
    allowed = {
        "restricted": {"list_id"}, "watch": {"list_id"},
        "holding_period": {"days", "assets", "include_predictions"},
        "blackout": {"start", "end", "assets", "list_id"},
        "threshold": {"value", "on", "currency"},
        "new_account": {"direction"},
        "preclearance_required": {"exempt_below", "exempt_assets", "include_predictions"},
    }[kind]
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise Invalid(f"params of a {kind} rule: unknown field(s) {', '.join(unknown)} "
                      f"(known: {', '.join(sorted(allowed))})", field=f"params.{unknown[0]}")
    if kind in ("restricted", "watch"):
        if "list_id" not in params:
            raise Invalid(f"a {kind} rule needs params.list_id", field="params.list_id")
        return {"list_id": _list_ref(session, params["list_id"], kind)}
    if kind == "holding_period":
        out: dict[str, Any] = {"days": _int(params.get("days", 30), "days", 1, 3650)}
        if params.get("assets"):
            out["assets"] = _assets(params["assets"])
        flag = params.get("include_predictions", False)
        if not isinstance(flag, bool):
            raise Invalid("params.include_predictions must be true or false", field="params.include_predictions")
        out["include_predictions"] = flag
        return out
    if kind == "blackout":
        start = parse_time(params.get("start"), "params.start")
        end = parse_time(params.get("end"), "params.end", end_of_day=True)
        if start is None or end is None:
            raise Invalid("a blackout needs params.start and params.end (dates or times)",
                          field="params.start" if start is None else "params.end")
        if end <= start:
            raise Invalid("params.end must be after params.start", field="params.end")
        out = {"start": time_text(start), "end": time_text(end)}
        if params.get("assets"):
            out["assets"] = _assets(params["assets"])
        if params.get("list_id") is not None:
            out["list_id"] = _list_ref(session, params["list_id"], None)
        return out
    if kind == "threshold":
        raw = params.get("value")
        try:
            value = Decimal(str(raw)) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite() or value <= 0:
            raise Invalid("params.value must be a positive amount in the base currency, e.g. \"10000\"",
                          field="params.value")
        on = params.get("on", list(THRESHOLD_ON))
        if not isinstance(on, list) or not on or any(o not in THRESHOLD_ON for o in on):
            raise Invalid(f"params.on must be a non-empty list of {', '.join(THRESHOLD_ON)}", field="params.on")
        out = {"value": format(value, "f"), "on": [o for o in THRESHOLD_ON if o in on]}
        if params.get("currency") is not None:
            if not isinstance(params["currency"], str) or not params["currency"].strip():
                raise Invalid("params.currency must be a currency code", field="params.currency")
            out["currency"] = params["currency"].strip().upper()
        return out
    if kind == "preclearance_required":
        return _preclearance_params(params)
    direction = params.get("direction", "both")
    if direction not in ("both", "outgoing"):
        raise Invalid("params.direction must be both or outgoing", field="params.direction")
    return {"direction": direction}


def _preclearance_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    raw = params.get("exempt_below")
    if raw is not None:
        try:
            value = Decimal(str(raw)) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite() or value <= 0:
            raise Invalid("params.exempt_below must be a positive amount in the base currency, e.g. \"500\"",
                          field="params.exempt_below")
        out["exempt_below"] = format(value, "f")
    if params.get("exempt_assets"):
        out["exempt_assets"] = _assets(params["exempt_assets"])
    flag = params.get("include_predictions", True)
    if not isinstance(flag, bool):
        raise Invalid("params.include_predictions must be true or false", field="params.include_predictions")
    out["include_predictions"] = flag
    return out


def _severity(kind: str, value: Any) -> str:
    if value is None or value == "":
        return DEFAULT_SEVERITY[kind]
    if value not in SEVERITIES:
        raise Invalid(f"severity must be one of {', '.join(SEVERITIES)}", field="severity")
    if kind in FIXED_SEVERITY and value != DEFAULT_SEVERITY[kind]:
        raise Invalid(f"a {kind} rule always raises {DEFAULT_SEVERITY[kind]} alerts", field="severity")
    return str(value)


def _snapshot(rule: Rule) -> dict[str, Any]:
    return {"name": rule.name, "kind": rule.kind, "params": rule.params, "applies_to": rule.applies_to,
            "severity": rule.severity, "enabled": rule.enabled}


def create(session: Session, actor: Actor, *, name: Any, kind: Any, params: Any = None, applies_to: Any = None,
           severity: Any = None, enabled: Any = True, base_currency: str | None = None) -> Rule:
    clean = clean_name(name)
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}", field="kind")
    cleaned = clean_params(session, kind, params)
    if kind == "threshold":
        _check_currency(cleaned, base_currency)
    if not isinstance(enabled, bool):
        raise Invalid("enabled must be true or false", field="enabled")
    audience = clean_applies_to(session, applies_to)
    if session.execute(select(Rule.id).where(Rule.name == clean)).first():
        raise Conflict(f"a rule named {clean!r} already exists")
    rule = Rule(name=clean, kind=kind, params=cleaned, applies_to=audience, severity=_severity(kind, severity),
                enabled=enabled, list_id=cleaned.get("list_id"), created_by=actor.user_id, updated_by=actor.user_id)
    session.add(rule)
    session.flush()
    record_change(session, actor, "rule", rule.id, 1, "created", _snapshot(rule))
    session.flush()
    return rule


def _check_currency(params: dict[str, Any], base_currency: str | None) -> None:
    if base_currency is None:
        return
    given = params.setdefault("currency", base_currency)
    if given != base_currency:
        raise Invalid(f"params.currency: values are in the base currency {base_currency}, not {given}",
                      field="params.currency")


def default_for_list(session: Session, actor: Actor, conduct_list: ConductList) -> Rule:
    """The restricted rule a new restricted list enables (its audience is the list's own)."""
    name = f"Restricted: {conduct_list.name}"[:200]
    taken = {n for (n,) in session.execute(select(Rule.name).where(Rule.name.like(f"{name[:190]}%")))}
    suffix = 2
    while name in taken:
        name = f"Restricted: {conduct_list.name}"[:190] + f" ({suffix})"
        suffix += 1
    return create(session, actor, name=name, kind="restricted", params={"list_id": conduct_list.id})


def get(session: Session, rule_id: int) -> Rule:
    rule = session.get(Rule, rule_id)
    if rule is None:
        raise NotFound("not found")
    return rule


def list_rules(session: Session, *, enabled_only: bool = False) -> list[Rule]:
    stmt = select(Rule).order_by(Rule.kind, Rule.name)
    if enabled_only:
        stmt = stmt.where(Rule.enabled.is_(True))
    return list(session.execute(stmt).scalars())


def update(session: Session, actor: Actor, rule_id: int, *, name: Any = None, params: Any = None,
           applies_to: Any = None, severity: Any = None, enabled: Any = None, base_currency: str | None = None
           ) -> Rule:
    rule = get(session, rule_id)
    before = _snapshot(rule)
    if name is not None:
        clean = clean_name(name)
        if clean != rule.name and session.execute(select(Rule.id).where(Rule.name == clean)).first():
            raise Conflict(f"a rule named {clean!r} already exists")
        rule.name = clean
    if params is not None:
        cleaned = clean_params(session, rule.kind, params)
        if rule.kind == "threshold":
            _check_currency(cleaned, base_currency)
        rule.params = cleaned
        rule.list_id = cleaned.get("list_id")
    if applies_to is not None:
        rule.applies_to = clean_applies_to(session, applies_to)
    if severity is not None:
        rule.severity = _severity(rule.kind, severity)
    if enabled is not None:
        if not isinstance(enabled, bool):
            raise Invalid("enabled must be true or false", field="enabled")
        rule.enabled = enabled
    after = _snapshot(rule)
    if after != before:
        rule.version += 1
        rule.updated_at = utcnow()
        rule.updated_by = actor.user_id
        record_change(session, actor, "rule", rule.id, rule.version, "updated", {"before": before, "after": after})
    session.flush()
    return rule


def rules_reading_list(session: Session, list_id: int) -> list[Rule]:
    """Enabled rules a change to the list affects: restricted/watch rules on it, blackouts over it."""
    out = []
    for rule in list_rules(session, enabled_only=True):
        if rule.list_id == list_id or (rule.kind == "blackout" and rule.params.get("list_id") == list_id):
            out.append(rule)
    return out


def describe(rule: Rule, list_names: dict[int, str] | None = None) -> str:
    """One line a compliance officer reads: what the rule checks."""
    p = rule.params or {}
    names = list_names or {}
    if rule.kind in ("restricted", "watch"):
        return f"trades, deposits, new holdings and positions touching list {names.get(int(p['list_id']), '?')}"
    if rule.kind == "holding_period":
        scope = ", ".join(p.get("assets") or []) or "any asset"
        return f"a sell within {p.get('days')} days of a buy of the same asset ({scope}; FIFO across venues)"
    if rule.kind == "blackout":
        what = ", ".join(p.get("assets") or [])
        if p.get("list_id"):
            what = (what + ", " if what else "") + f"list {names.get(p['list_id'], '?')}"
        return f"trades in {what or 'any asset'} from {p.get('start')} to {p.get('end')}"
    if rule.kind == "threshold":
        return f"{', '.join(p.get('on') or [])} over {p.get('value')} {p.get('currency', '')}".strip()
    if rule.kind == "preclearance_required":
        exempt = []
        if p.get("exempt_below"):
            exempt.append(f"below {p['exempt_below']}")
        if p.get("exempt_assets"):
            exempt.append(", ".join(p["exempt_assets"]))
        what = "trades" + (" and new prediction positions" if p.get("include_predictions", True) else "")
        return (f"{what} without a matching approval (no request, over the quantity, outside the window)"
                + (f"; exempt: {'; '.join(exempt)}" if exempt else ""))
    return ("transfers " + ("to" if p.get("direction") == "outgoing" else "to or from")
            + " an address the employee never connected")


def window(rule: Rule) -> tuple[dt.datetime, dt.datetime]:
    p = rule.params
    start, end = parse_time(p["start"], "start"), parse_time(p["end"], "end")
    assert start is not None and end is not None
    return start, end
