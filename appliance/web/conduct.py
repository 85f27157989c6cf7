"""Pages for restricted and watch lists, conduct rules and employee groups. Every change says what it
raised; a refused form comes back with what was typed and what is missing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.errors import Conflict, Invalid, VigatraError
from appliance.services import conduct
from appliance.services.rules import catalogue, groups, lists
from appliance.services.rules.common import change_json, describe_audience, history, user_names
from appliance.services.rules.evaluate import EvaluationResult
from appliance.services.rules.matching import ENTRY_TYPES
from appliance.store.models import ConductList, Employee, EmployeeGroup, Rule, UnvaluedRecord
from appliance.web import forms, web_blueprint

Refusal = (Invalid, Conflict)


def _raised(result: EvaluationResult) -> str:
    n = len(result.alert_ids)
    return f" The history was evaluated again: {n} new alert(s)." if n else " No new alert."


def _audience(form: forms.AudienceForm) -> dict[str, Any]:
    departments = [d.strip() for d in form.departments.split(",") if d.strip()]
    return {"departments": departments, "groups": list(form.groups)}


def _entry(form: forms.EntryForm) -> dict[str, Any]:
    return {"type": form.type, "value": form.value, "effective_from": form.effective_from or None,
            "effective_to": form.effective_to or None, "note": form.note}


def _group_choices() -> list[EmployeeGroup]:
    return [g for g, _n in groups.list_groups(db())]


def _history(subject: str, subject_id: int) -> list[dict[str, Any]]:
    session = db()
    changes = history(session, subject, subject_id)
    names = user_names(session, [c.changed_by for c in changes])
    return [change_json(c, names) for c in reversed(changes)]


def _refused(render: Callable[..., str], exc: VigatraError, **context: Any) -> ResponseReturnValue:
    """The page again, with what was typed and what is wrong (400: the unit of work rolls back)."""
    return render(form=request.form, error=exc, **context), 400


# -- lists --------------------------------------------------------------------------------------------

def render_lists(*, form: Any = None, error: VigatraError | None = None) -> str:
    session = db()
    rows = lists.list_lists(session)
    counts = {row.id: len(lists.entries(session, row.id)) for row in rows}
    return render_template("lists.html", lists=rows, counts=counts,
                           audiences={r.id: describe_audience(session, r.applies_to) for r in rows},
                           groups=_group_choices(), form=form or {}, error=error)


@web_blueprint.route("/lists")
@requires("lists:read", action="lists.list")
@accepts(media=("text/html",))
def lists_page() -> ResponseReturnValue:
    return render_lists()


@web_blueprint.route("/lists", methods=["POST"])
@requires("lists:write", action="lists.create")
@accepts(form=forms.ListForm, media=("text/html",))
def lists_create(form: forms.ListForm) -> ResponseReturnValue:
    entries = [_entry(form)] if form.value.strip() else []
    try:
        row, rules, result = conduct.create_list(
            db(), appliance(), state().actor, name=form.name, kind=form.kind, entries=entries,
            description=form.description, applies_to=_audience(form), watch_rule=form.watch_rule == "1")
    except Refusal as exc:
        return _refused(render_lists, exc)
    audit_resource("lists", row.id)
    audit_detail(kind=row.kind, rules=[r.id for r in rules] or None)
    ruled = f" Rule {rules[0].name!r} now applies it." if rules else " No rule reads it yet: add one on the Rules page."
    flash(f"List {row.name!r} created.{ruled}{_raised(result)}", "ok")
    return redirect(url_for("web.list_page", list_id=row.id))


def render_list(list_id: int, *, form: Any = None, error: VigatraError | None = None) -> str:
    session = db()
    row = lists.get(session, list_id)
    items = lists.entries(session, row.id, include_removed=True)
    names = user_names(session, [e.added_by for e in items] + [e.removed_by for e in items])
    readers = [r for r in catalogue.list_rules(session) if r.list_id == row.id or r.params.get("list_id") == row.id]
    return render_template("list.html", row=row, entries=items, names=names, rules=readers,
                           audience=describe_audience(session, row.applies_to), history=_history("list", row.id),
                           types=ENTRY_TYPES, groups=_group_choices(), form=form or {}, error=error)


@web_blueprint.route("/lists/<int:list_id>")
@requires("lists:read", action="lists.view")
@accepts(media=("text/html",))
def list_page(list_id: int) -> ResponseReturnValue:
    return render_list(list_id)


@web_blueprint.route("/lists/<int:list_id>/entries", methods=["POST"])
@requires("lists:write", action="lists.entries_add")
@accepts(form=forms.EntryForm, media=("text/html",))
def list_entry_add(list_id: int, form: forms.EntryForm) -> ResponseReturnValue:
    try:
        added, result = conduct.add_entries(db(), appliance(), state().actor, list_id, [_entry(form)])
    except Refusal as exc:
        return _refused(render_list, exc, list_id=list_id)
    audit_detail(entries=[e.id for e in added])
    flash(f"Entry {added[0].value!r} added.{_raised(result)}", "ok")
    return redirect(url_for("web.list_page", list_id=list_id))


@web_blueprint.route("/lists/<int:list_id>/entries/<int:entry_id>/remove", methods=["POST"])
@requires("lists:write", action="lists.entry_remove", resource_arg="list_id")
@accepts(form=forms.NoFields, media=("text/html",))
def list_entry_remove(list_id: int, entry_id: int) -> ResponseReturnValue:
    entry = conduct.remove_entry(db(), appliance(), state().actor, list_id, entry_id)
    audit_detail(entry_id=entry_id)
    flash(f"Entry {entry.value!r} removed: it matches nothing from now on; its alerts stay.", "ok")
    return redirect(url_for("web.list_page", list_id=list_id))


@web_blueprint.route("/lists/<int:list_id>/audience", methods=["POST"])
@requires("lists:write", action="lists.update")
@accepts(form=forms.AudienceForm, media=("text/html",))
def list_audience(list_id: int, form: forms.AudienceForm) -> ResponseReturnValue:
    try:
        row, result = conduct.update_list(db(), appliance(), state().actor, list_id, applies_to=_audience(form))
    except Refusal as exc:
        return _refused(render_list, exc, list_id=list_id)
    flash(f"List {row.name!r} now applies to {describe_audience(db(), row.applies_to)}.{_raised(result)}", "ok")
    return redirect(url_for("web.list_page", list_id=list_id))


# -- rules --------------------------------------------------------------------------------------------

def _number(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _params(form: forms.RuleForm) -> dict[str, Any]:
    """The parameters the rule form sends for its kind (the service validates them)."""
    kind = form.kind
    assets = [a.strip() for a in form.assets.split(",") if a.strip()]
    list_id = _number(form.list_id)
    if kind in ("restricted", "watch"):
        return {"list_id": list_id} if list_id is not None else {}
    if kind == "holding_period":
        days = _number(form.days)
        return {"days": days if days is not None else form.days.strip(), "assets": assets,
                "include_predictions": form.include_predictions == "1"}
    if kind == "blackout":
        out: dict[str, Any] = {"start": form.start or None, "end": form.end or None, "assets": assets}
        if list_id is not None:
            out["list_id"] = list_id
        return out
    if kind == "threshold":
        return {"value": form.value.strip(), "on": list(form.on)}
    if kind == "new_account":
        return {"direction": form.direction or "both"}
    return {}


def render_rules(*, form: Any = None, error: VigatraError | None = None) -> str:
    session = db()
    rules = catalogue.list_rules(session)
    list_rows = lists.list_lists(session) if state().actor.can("lists:read") or state().actor.can("rules:write") \
        else []
    list_names = dict(session.execute(select(ConductList.id, ConductList.name)).all())
    return render_template("rules.html", rules=rules, list_names=list_names, lists=list_rows,
                           describe=catalogue.describe, labels=catalogue.LABELS,
                           audiences={r.id: describe_audience(session, r.applies_to) for r in rules},
                           groups=_group_choices(), kinds=catalogue.KINDS, on=catalogue.THRESHOLD_ON,
                           form=form or {}, error=error)


@web_blueprint.route("/rules")
@requires("rules:read", action="rules.list")
@accepts(media=("text/html",))
def rules_page() -> ResponseReturnValue:
    return render_rules()


@web_blueprint.route("/rules", methods=["POST"])
@requires("rules:write", action="rules.create")
@accepts(form=forms.RuleForm, media=("text/html",))
def rules_create(form: forms.RuleForm) -> ResponseReturnValue:
    try:
        rule, result = conduct.create_rule(db(), appliance(), state().actor, name=form.name, kind=form.kind,
                                           params=_params(form), applies_to=_audience(form),
                                           severity=form.severity or None)
    except Refusal as exc:
        return _refused(render_rules, exc)
    audit_resource("rules", rule.id)
    audit_detail(kind=rule.kind)
    flash(f"Rule {rule.name!r} created.{_raised(result)}", "ok")
    return redirect(url_for("web.rule_page", rule_id=rule.id))


@web_blueprint.route("/rules/<int:rule_id>")
@requires("rules:read", action="rules.view")
@accepts(media=("text/html",))
def rule_page(rule_id: int) -> ResponseReturnValue:
    session = db()
    rule = catalogue.get(session, rule_id)
    list_names = dict(session.execute(select(ConductList.id, ConductList.name)).all())
    unvalued = list(session.execute(select(UnvaluedRecord).where(
        UnvaluedRecord.rule_id == rule.id, UnvaluedRecord.valued_at.is_(None)).order_by(
        UnvaluedRecord.id.desc()).limit(50)).scalars())
    unvalued_count = int(session.execute(select(func.count()).select_from(UnvaluedRecord).where(
        UnvaluedRecord.rule_id == rule.id, UnvaluedRecord.valued_at.is_(None))).scalar_one())
    employee_names = dict(session.execute(select(Employee.id, Employee.name).where(
        Employee.id.in_({u.employee_id for u in unvalued if u.employee_id}))).all()) if unvalued else {}
    from appliance.services import alerts as alert_service

    raised = alert_service.list_alerts(session, rule_id=rule.id, limit=50)
    return render_template("rule.html", rule=rule, describe=catalogue.describe(rule, list_names),
                           label=catalogue.LABELS[rule.kind], list_names=list_names,
                           audience=describe_audience(session, rule.applies_to), history=_history("rule", rule.id),
                           unvalued=unvalued, unvalued_count=unvalued_count, employee_names=employee_names,
                           alerts=raised, names=alert_service.names_for(session, raised))


@web_blueprint.route("/rules/<int:rule_id>/enabled", methods=["POST"])
@requires("rules:write", action="rules.update")
@accepts(form=forms.RuleEnabledForm, media=("text/html",))
def rule_enabled(rule_id: int, form: forms.RuleEnabledForm) -> ResponseReturnValue:
    enabled = form.enabled == "1"
    rule, result = conduct.update_rule(db(), appliance(), state().actor, rule_id, enabled=enabled)
    audit_detail(enabled=enabled)
    flash(f"Rule {rule.name!r} {'enabled' if enabled else 'disabled'}.{_raised(result) if enabled else ''}", "ok")
    return redirect(url_for("web.rule_page", rule_id=rule_id))


@web_blueprint.route("/rules/<int:rule_id>/evaluate", methods=["POST"])
@requires("rules:write", action="rules.evaluate")
@accepts(form=forms.NoFields, media=("text/html",))
def rule_evaluate(rule_id: int) -> ResponseReturnValue:
    rule: Rule = catalogue.get(db(), rule_id)
    result = conduct.reevaluate(db(), appliance(), rule_ids=[rule.id])
    audit_detail(alerts_raised=len(result.alert_ids))
    flash(f"Rule {rule.name!r} evaluated over the whole history.{_raised(result)}", "ok")
    return redirect(url_for("web.rule_page", rule_id=rule_id))


# -- groups -------------------------------------------------------------------------------------------

def render_groups(*, form: Any = None, error: VigatraError | None = None) -> str:
    return render_template("groups.html", groups=groups.list_groups(db()), form=form or {}, error=error)


@web_blueprint.route("/groups")
@requires("groups:read", action="groups.list")
@accepts(media=("text/html",))
def groups_page() -> ResponseReturnValue:
    return render_groups()


@web_blueprint.route("/groups", methods=["POST"])
@requires("groups:write", action="groups.create")
@accepts(form=forms.GroupForm, media=("text/html",))
def groups_create(form: forms.GroupForm) -> ResponseReturnValue:
    try:
        group = conduct.create_group(db(), appliance(), state().actor, name=form.name, description=form.description)
    except Refusal as exc:
        return _refused(render_groups, exc)
    audit_resource("groups", group.id)
    flash(f"Group {group.name!r} created: add its members.", "ok")
    return redirect(url_for("web.group_page", group_id=group.id))


def render_group(group_id: int, *, form: Any = None, error: VigatraError | None = None) -> str:
    session = db()
    group = groups.get(session, group_id)
    members = groups.members(session, group.id)
    inside = {m.id for m in members}
    others = [(i, n) for i, n in session.execute(select(Employee.id, Employee.name).where(
        Employee.status == "active").order_by(Employee.name)) if i not in inside]
    return render_template("group.html", group=group, members=members, others=others,
                           history=_history("group", group.id), form=form or {}, error=error)


@web_blueprint.route("/groups/<int:group_id>")
@requires("groups:read", action="groups.view")
@accepts(media=("text/html",))
def group_page(group_id: int) -> ResponseReturnValue:
    return render_group(group_id)


@web_blueprint.route("/groups/<int:group_id>/members", methods=["POST"])
@requires("groups:write", action="groups.members_add")
@accepts(form=forms.MembersForm, media=("text/html",))
def group_members_add(group_id: int, form: forms.MembersForm) -> ResponseReturnValue:
    ids = list(form.employee_id)
    try:
        if not ids:
            raise Invalid("choose at least one employee to add", field="employee_id")
        added, result = conduct.add_members(db(), appliance(), state().actor, group_id, ids)
    except Refusal as exc:
        return _refused(render_group, exc, group_id=group_id)
    audit_detail(employee_ids=added)
    flash(f"{len(added)} member(s) added.{_raised(result)}", "ok")
    return redirect(url_for("web.group_page", group_id=group_id))


@web_blueprint.route("/groups/<int:group_id>/members/<int:employee_id>/remove", methods=["POST"])
@requires("groups:write", action="groups.member_remove", resource_arg="group_id")
@accepts(form=forms.NoFields, media=("text/html",))
def group_member_remove(group_id: int, employee_id: int) -> ResponseReturnValue:
    groups.remove_member(db(), state().actor, group_id, employee_id)
    audit_detail(employee_id=employee_id)
    flash("Member removed: the group's rules no longer apply to them; alerts already raised stay.", "ok")
    return redirect(url_for("web.group_page", group_id=group_id))
