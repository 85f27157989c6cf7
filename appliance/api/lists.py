"""Restricted and watch lists, and the employee groups lists and rules apply to."""

from __future__ import annotations

from typing import Any

from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api import conduct_schemas as c
from appliance.api.common import json_value, respond
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.services import conduct
from appliance.services.rules import groups, lists
from appliance.services.rules.common import change_json, describe_audience, history, user_names
from appliance.services.rules.evaluate import EvaluationResult
from appliance.store.models import ConductList, EmployeeGroup, ListEntry


def entry_json(entry: ListEntry, names: dict[int, str]) -> dict[str, Any]:
    return {"id": entry.id, "type": entry.type, "value": entry.value,
            "effective_from": json_value(entry.effective_from), "effective_to": json_value(entry.effective_to),
            "note": entry.note,
            "added_at": json_value(entry.added_at), "added_by": names.get(entry.added_by or 0, ""),
            "removed_at": json_value(entry.removed_at)}


def list_json(row: ConductList, *, detail: bool = False) -> dict[str, Any]:
    session = db()
    items = lists.entries(session, row.id, include_removed=detail)
    names = user_names(session, [row.created_by, row.updated_by, *(e.added_by for e in items)])
    out: dict[str, Any] = {
        "id": row.id, "name": row.name, "kind": row.kind, "description": row.description,
        "applies_to": audience_json(row.applies_to), "applies_to_text": describe_audience(session, row.applies_to),
        "version": row.version, "created_at": json_value(row.created_at),
        "created_by": names.get(row.created_by or 0, ""), "updated_at": json_value(row.updated_at),
        "updated_by": names.get(row.updated_by or 0, ""),
        "entries": [entry_json(e, names) for e in items if detail or e.removed_at is None],
    }
    if detail:
        changes = history(session, "list", row.id)
        who = user_names(session, [c.changed_by for c in changes])
        out["history"] = [change_json(c, who) for c in changes]
    return out


def audience_json(stored: dict[str, Any] | None) -> dict[str, Any]:
    stored = stored or {}
    return {"departments": list(stored.get("departments") or []), "groups": list(stored.get("groups") or [])}


def audience_in(given: c.Audience | None) -> dict[str, Any] | None:
    """The audience as the services take it (None: every employee, or unchanged on an update)."""
    return given.model_dump() if given is not None else None


def entries_in(given: list[c.EntryIn] | None) -> list[dict[str, Any]]:
    return [e.model_dump() for e in given or ()]


def _evaluated(result: EvaluationResult) -> dict[str, Any]:
    audit_detail(alerts_raised=len(result.alert_ids) or None)
    return result.summary()


@api_blueprint.route("/lists", methods=["GET"])
@requires("lists:read", action="lists.list")
@accepts(returns=c.ListList)
def list_lists() -> ResponseReturnValue:
    """Restricted and watch lists with their live entries."""
    return respond({"lists": [list_json(row) for row in lists.list_lists(db())]})


@api_blueprint.route("/lists", methods=["POST"])
@requires("lists:write", action="lists.create")
@accepts(body=c.ListCreate, returns=c.ListCreated, status=201, errors=(409,))
def create_list(body: c.ListCreate) -> ResponseReturnValue:
    """A new list; a restricted list enables its restricted rule, and the history is evaluated against it."""
    entries = entries_in(body.entries)
    row, rules, result = conduct.create_list(
        db(), appliance(), state().actor, name=body.name, kind=body.kind, entries=entries,
        description=body.description, applies_to=audience_in(body.applies_to), watch_rule=body.watch_rule)
    audit_resource("lists", row.id)
    audit_detail(kind=row.kind, entries=len(entries), rules=[r.id for r in rules] or None)
    out = list_json(row)
    out["rules"] = [{"id": r.id, "name": r.name, "kind": r.kind} for r in rules]
    out["evaluation"] = _evaluated(result)
    return respond(out, 201)


@api_blueprint.route("/lists/<int:list_id>", methods=["GET"])
@requires("lists:read", action="lists.view")
@accepts(returns=c.ListDetail)
def get_list(list_id: int) -> ResponseReturnValue:
    """One list with every entry (removed ones too) and its history."""
    return respond(list_json(lists.get(db(), list_id), detail=True))


@api_blueprint.route("/lists/<int:list_id>", methods=["PATCH"])
@requires("lists:write", action="lists.update")
@accepts(body=c.ListUpdate, returns=c.ListUpdated, errors=(409,))
def update_list(list_id: int, body: c.ListUpdate) -> ResponseReturnValue:
    """Rename a list, or change its description or whom it applies to."""
    row, result = conduct.update_list(db(), appliance(), state().actor, list_id, name=body.name,
                                      description=body.description, applies_to=audience_in(body.applies_to))
    out = list_json(row)
    out["evaluation"] = _evaluated(result)
    return respond(out)


@api_blueprint.route("/lists/<int:list_id>/entries", methods=["POST"])
@requires("lists:write", action="lists.entries_add")
@accepts(body=c.EntriesAdd, returns=c.EntriesAdded, status=201)
def add_entries(list_id: int, body: c.EntriesAdd) -> ResponseReturnValue:
    """Add entries to a list (the history is evaluated against them)."""
    added, result = conduct.add_entries(db(), appliance(), state().actor, list_id, entries_in(body.entries))
    audit_detail(entries=[e.id for e in added])
    names = user_names(db(), [state().actor.user_id])
    return respond({"entries": [entry_json(e, names) for e in added], "evaluation": _evaluated(result)}, 201)


@api_blueprint.route("/lists/<int:list_id>/entries/<int:entry_id>", methods=["PATCH"])
@requires("lists:write", action="lists.entry_change", resource_arg="list_id")
@accepts(body=c.EntryChange, returns=c.EntryChanged)
def change_entry(list_id: int, entry_id: int, body: c.EntryChange) -> ResponseReturnValue:
    """Change an entry's dates or note (to change its type or value, remove it and add another)."""
    entry, result = conduct.change_entry(db(), appliance(), state().actor, list_id, entry_id,
                                         body.model_dump(exclude_unset=True))
    audit_detail(entry_id=entry_id)
    return respond({**entry_json(entry, user_names(db(), [entry.added_by])), "evaluation": _evaluated(result)})


@api_blueprint.route("/lists/<int:list_id>/entries/<int:entry_id>", methods=["DELETE"])
@requires("lists:write", action="lists.entry_remove", resource_arg="list_id")
@accepts(returns=c.EntryOut)
def remove_entry(list_id: int, entry_id: int) -> ResponseReturnValue:
    """Remove an entry: it matches nothing from now on and stays on record with its alerts."""
    entry = conduct.remove_entry(db(), appliance(), state().actor, list_id, entry_id)
    audit_detail(entry_id=entry_id)
    return respond(entry_json(entry, user_names(db(), [entry.added_by])))


# -- groups ------------------------------------------------------------------------------------------

def group_json(group: EmployeeGroup, members: int | None = None, *, detail: bool = False) -> dict[str, Any]:
    session = db()
    out: dict[str, Any] = {"id": group.id, "name": group.name, "description": group.description,
                           "version": group.version, "created_at": json_value(group.created_at)}
    if members is not None:
        out["members"] = members
    if detail:
        people = groups.members(session, group.id)
        out["members"] = [{"id": e.id, "name": e.name, "department": e.department} for e in people]
        changes = history(session, "group", group.id)
        out["history"] = [change_json(c, user_names(session, [c.changed_by for c in changes])) for c in changes]
    return out


@api_blueprint.route("/groups", methods=["GET"])
@requires("groups:read", action="groups.list")
@accepts(returns=c.GroupList)
def list_groups() -> ResponseReturnValue:
    """Named employee groups with their member counts."""
    return respond({"groups": [group_json(g, n) for g, n in groups.list_groups(db())]})


@api_blueprint.route("/groups", methods=["POST"])
@requires("groups:write", action="groups.create")
@accepts(body=c.GroupCreate, returns=c.GroupDetail, status=201, errors=(409,))
def create_group(body: c.GroupCreate) -> ResponseReturnValue:
    """A new employee group, with its first members."""
    group = conduct.create_group(db(), appliance(), state().actor, name=body.name, description=body.description,
                                 employee_ids=body.employee_ids)
    audit_resource("groups", group.id)
    return respond(group_json(group, detail=True), 201)


@api_blueprint.route("/groups/<int:group_id>", methods=["GET"])
@requires("groups:read", action="groups.view")
@accepts(returns=c.GroupDetail)
def get_group(group_id: int) -> ResponseReturnValue:
    """One group: its members and history."""
    return respond(group_json(groups.get(db(), group_id), detail=True))


@api_blueprint.route("/groups/<int:group_id>", methods=["PATCH"])
@requires("groups:write", action="groups.update")
@accepts(body=c.GroupUpdate, returns=c.GroupDetail, errors=(409,))
def update_group(group_id: int, body: c.GroupUpdate) -> ResponseReturnValue:
    """Rename a group or change its description."""
    group = groups.update(db(), state().actor, group_id, name=body.name, description=body.description)
    return respond(group_json(group, detail=True))


@api_blueprint.route("/groups/<int:group_id>/members", methods=["POST"])
@requires("groups:write", action="groups.members_add")
@accepts(body=c.GroupMembers, returns=c.MembersAdded)
def add_group_members(group_id: int, body: c.GroupMembers) -> ResponseReturnValue:
    """Add members: the group's rules are evaluated over their history."""
    added, result = conduct.add_members(db(), appliance(), state().actor, group_id, list(body.employee_ids))
    audit_detail(employee_ids=added)
    return respond({"added": added, "evaluation": _evaluated(result)})


@api_blueprint.route("/groups/<int:group_id>/members/<int:employee_id>", methods=["DELETE"])
@requires("groups:write", action="groups.member_remove", resource_arg="group_id")
@accepts(returns=c.MemberRemoved)
def remove_group_member(group_id: int, employee_id: int) -> ResponseReturnValue:
    """Remove a member: the group's rules no longer apply to them; alerts already raised stay."""
    groups.remove_member(db(), state().actor, group_id, employee_id)
    audit_detail(employee_id=employee_id)
    return respond({"removed": employee_id})
