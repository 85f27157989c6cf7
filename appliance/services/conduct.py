"""Conduct use cases as the API, the UI, the CLI and the poller call them: a change to a list, a rule or
a group, then the retroactive evaluation it calls for and the notices of new critical alerts, in the
caller's unit of work; and the evaluation after a sync, in a unit of work of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from appliance.rbac.actors import Actor
from appliance.services import notifications, preclearance_match
from appliance.services.context import Appliance
from appliance.services.rules import after_sync, catalogue, groups, lists, parallel
from appliance.services.rules.common import known_venues
from appliance.services.rules.evaluate import EvaluationResult, evaluate_history, evaluate_new, has_new_records
from appliance.services.rules.values import Valuer, base_currency, default_valuer
from appliance.store.models import ConductList, EmployeeGroup, Rule

log = logging.getLogger(__name__)


def valuer(app: Appliance) -> Valuer:
    return default_valuer(app.settings)


def reevaluate(session: Session, app: Appliance, *, rule_ids: Sequence[int] | None = None,
               employee_ids: Sequence[int] | None = None) -> EvaluationResult:
    """The whole history again (of these rules, of these employees), and mail for new critical alerts."""
    result = evaluate_history(session, valuer(app), rule_ids=rule_ids, employee_ids=employee_ids,
                              workers=parallel.resolve_workers(app.settings.rules.workers))
    notifications.alerts_raised(session, app.mailer, app.settings, result.critical_ids)
    return result


# -- lists ----------------------------------------------------------------------------------------------

def create_list(session: Session, app: Appliance, actor: Actor, *, name: Any, kind: Any, entries: Any = None,
                description: Any = "", applies_to: Any = None, watch_rule: bool = False
                ) -> tuple[ConductList, list[Rule], EvaluationResult]:
    """A new list; a restricted list enables its default restricted rule (a watch list its watch rule
    when asked), and the history is evaluated against it at once."""
    row = lists.create(session, actor, name=name, kind=kind, entries=entries, description=description,
                       applies_to=applies_to, venues=known_venues(app.settings))
    rules: list[Rule] = []
    if row.kind == "restricted":
        rules.append(catalogue.default_for_list(session, actor, row))
    elif watch_rule:
        rules.append(catalogue.create(session, actor, name=_free_name(session, f"Watch: {row.name}"), kind="watch",
                                      params={"list_id": row.id}))
    result = reevaluate(session, app, rule_ids=[r.id for r in rules]) if rules else EvaluationResult()
    return row, rules, result


def _free_name(session: Session, wanted: str) -> str:
    from sqlalchemy import select

    name, n = wanted[:200], 2
    while session.execute(select(Rule.id).where(Rule.name == name)).first():
        name = f"{wanted[:190]} ({n})"
        n += 1
    return name


def list_changed(session: Session, app: Appliance, list_id: int) -> EvaluationResult:
    rules = catalogue.rules_reading_list(session, list_id)
    return reevaluate(session, app, rule_ids=[r.id for r in rules]) if rules else EvaluationResult()


def update_list(session: Session, app: Appliance, actor: Actor, list_id: int, **changes: Any
                ) -> tuple[ConductList, EvaluationResult]:
    row = lists.update(session, actor, list_id, **changes)
    return row, list_changed(session, app, list_id)


def add_entries(session: Session, app: Appliance, actor: Actor, list_id: int, entries: Any
                ) -> tuple[list[Any], EvaluationResult]:
    added = lists.add_entries(session, actor, list_id, entries, venues=known_venues(app.settings))
    return added, list_changed(session, app, list_id)


def change_entry(session: Session, app: Appliance, actor: Actor, list_id: int, entry_id: int,
                 changes: dict[str, Any]) -> tuple[Any, EvaluationResult]:
    entry = lists.change_entry(session, actor, list_id, entry_id, changes)
    return entry, list_changed(session, app, list_id)


def remove_entry(session: Session, app: Appliance, actor: Actor, list_id: int, entry_id: int) -> Any:
    """Removal raises nothing new (fewer entries match less): no evaluation."""
    return lists.remove_entry(session, actor, list_id, entry_id)


# -- rules ----------------------------------------------------------------------------------------------

def create_rule(session: Session, app: Appliance, actor: Actor, **fields: Any) -> tuple[Rule, EvaluationResult]:
    rule = catalogue.create(session, actor, base_currency=base_currency(app.settings), **fields)
    result = reevaluate(session, app, rule_ids=[rule.id]) if rule.enabled else EvaluationResult()
    if rule.enabled and rule.kind == "preclearance_required":
        result.alert_ids.extend(preclearance_match.evaluate_rule(session, app.settings, rule))
    return rule, result


def update_rule(session: Session, app: Appliance, actor: Actor, rule_id: int, **fields: Any
                ) -> tuple[Rule, EvaluationResult]:
    before = catalogue.get(session, rule_id).version
    rule = catalogue.update(session, actor, rule_id, base_currency=base_currency(app.settings), **fields)
    changed = rule.version != before
    result = reevaluate(session, app, rule_ids=[rule.id]) if rule.enabled and changed else EvaluationResult()
    if rule.enabled and changed and rule.kind == "preclearance_required":
        result.alert_ids.extend(preclearance_match.evaluate_rule(session, app.settings, rule))
    return rule, result


# -- groups ---------------------------------------------------------------------------------------------

def _group_rules(session: Session, group_id: int) -> list[int]:
    """Enabled rules that apply to the group, directly or through the list they read."""
    out = []
    for rule in catalogue.list_rules(session, enabled_only=True):
        if group_id in (rule.applies_to or {}).get("groups", []):
            out.append(rule.id)
            continue
        if rule.list_id is not None:
            row = session.get(ConductList, rule.list_id)
            if row is not None and group_id in (row.applies_to or {}).get("groups", []):
                out.append(rule.id)
    return out


def add_members(session: Session, app: Appliance, actor: Actor, group_id: int, employee_ids: Any
                ) -> tuple[list[int], EvaluationResult]:
    """New members come under the group's rules: their history is evaluated against them."""
    added = groups.add_members(session, actor, group_id, employee_ids if isinstance(employee_ids, list) else [None])
    rule_ids = _group_rules(session, group_id)
    if not added or not rule_ids:
        return added, EvaluationResult()
    return added, reevaluate(session, app, rule_ids=rule_ids, employee_ids=added)


def create_group(session: Session, app: Appliance, actor: Actor, *, name: Any, description: Any = "",
                 employee_ids: Any = None) -> EmployeeGroup:
    ids = employee_ids if employee_ids is not None else []
    if not isinstance(ids, list):
        from appliance.errors import Invalid

        raise Invalid("employee_ids must be a list of employee ids", field="employee_ids")
    return groups.create(session, actor, name=name, description=description, employee_ids=ids)


# -- after a sync -----------------------------------------------------------------------------------------

def evaluate_connection(app: Appliance, connection_id: int, *, stored: bool = False) -> EvaluationResult:
    """The records a sync stored for this connection, in a unit of work of its own (after the sync's
    last commit), then the notices of new critical alerts once that unit of work committed. A sync that
    stored nothing (``stored`` false) first asks, in a read, whether earlier records await evaluation."""
    if not stored:
        with app.store.read() as session:
            if not has_new_records(session, connection_id):
                return EvaluationResult()
    with app.store.queued_unit_of_work() as session:
        # Post-trade matching first: it reads what is new from the evaluation mark that evaluate_new moves.
        matched = preclearance_match.match_connection(session, app.settings, connection_id)
        result = evaluate_new(session, valuer(app), connection_id, app.rule_cache)
        # Most trades have no pre-clearance ("no_request"): the rules are read only when one asks for it.
        asks = matched and any(r.kind == "preclearance_required" for r in app.rule_cache.compiled(session))
        result.alert_ids.extend(preclearance_match.raise_alerts(session, app.settings, matched,
                                                                None if asks else []))
        notifications.alerts_raised(session, app.mailer, app.settings, result.critical_ids)
    return result


def evaluate_connections(app: Appliance, connection_ids: Sequence[int], *, stored: Sequence[int] = ()
                         ) -> tuple[EvaluationResult, dict[int, int]]:
    """``evaluate_connection`` for the connections a polling cycle synced, in one unit of work: the same
    matching, the same alerts and marks, with the statements shared (services/rules/after_sync.py).
    Connections that stored nothing (not in ``stored``) are first asked about in a read, all at once.
    Returns the result and the alerts raised per connection."""
    stored_now = set(stored)
    waiting = [cid for cid in connection_ids if cid not in stored_now]
    if waiting:
        with app.store.read() as session:
            stored_now.update(after_sync.with_new_records(session, waiting))
    if not stored_now:
        return EvaluationResult(), {}
    ids = sorted(stored_now)
    with app.store.queued_unit_of_work() as session:
        # Post-trade matching first: it reads what is new from the evaluation marks that the evaluation moves.
        matched = preclearance_match.match_connections(session, app.settings, ids)
        result = after_sync.evaluate_new_of(session, valuer(app), ids, app.rule_cache)
        asks = matched and any(r.kind == "preclearance_required" for r in app.rule_cache.compiled(session))
        result.alert_ids.extend(preclearance_match.raise_alerts(session, app.settings, matched,
                                                                None if asks else []))
        per_connection = after_sync.alerts_per_connection(session, result.alert_ids, ids)
        notifications.alerts_raised(session, app.mailer, app.settings, result.critical_ids)
    return result, per_connection


def revalue(app: Appliance) -> EvaluationResult:
    """After a pricing run: the threshold rules look again at the records they could not value (values
    appear when the pricing job has run, after the sync that stored the records)."""
    from sqlalchemy import select

    from appliance.store.models import Rule as RuleModel
    from appliance.store.models import UnvaluedRecord

    with app.store.queued_unit_of_work() as session:
        rules = [r.id for r in session.execute(select(RuleModel).where(
            RuleModel.kind == "threshold", RuleModel.enabled.is_(True))).scalars()]
        if not rules:
            return EvaluationResult()
        employees = sorted({int(e or 0) for (e,) in session.execute(select(UnvaluedRecord.employee_id).where(
            UnvaluedRecord.rule_id.in_(rules), UnvaluedRecord.valued_at.is_(None),
            UnvaluedRecord.employee_id.is_not(None)).distinct())})
        if not employees:
            return EvaluationResult()
        return reevaluate(session, app, rule_ids=rules, employee_ids=employees)
