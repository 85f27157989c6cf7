"""Restricted and watch lists, and the employee groups lists and rules apply to."""

from __future__ import annotations

from typing import Any

from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api.common import body, fields, json_value, respond
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
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
        "applies_to": row.applies_to, "applies_to_text": describe_audience(session, row.applies_to),
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


def _evaluated(result: EvaluationResult) -> dict[str, Any]:
    audit_detail(alerts_raised=len(result.alert_ids) or None)
    return result.summary()


@api_blueprint.route("/lists", methods=["GET"])
@requires("lists:read", action="lists.list")
def list_lists() -> ResponseReturnValue:
    return respond({"lists": [list_json(row) for row in lists.list_lists(db())]})


@api_blueprint.route("/lists", methods=["POST"])
@requires("lists:write", action="lists.create")
def create_list() -> ResponseReturnValue:
    data = body()
    fields(data, {"name", "kind", "entries", "description", "applies_to", "watch_rule"}, ("name", "kind"))
    watch_rule = data.get("watch_rule", False)
    if not isinstance(watch_rule, bool):
        from appliance.errors import Invalid

        raise Invalid("watch_rule must be true or false", field="watch_rule")
    row, rules, result = conduct.create_list(
        db(), appliance(), state().actor, name=data.get("name"), kind=data.get("kind"), entries=data.get("entries"),
        description=data.get("description", ""), applies_to=data.get("applies_to"), watch_rule=watch_rule)
    audit_resource("lists", row.id)
    audit_detail(kind=row.kind, entries=len(data.get("entries") or []), rules=[r.id for r in rules] or None)
    out = list_json(row)
    out["rules"] = [{"id": r.id, "name": r.name, "kind": r.kind} for r in rules]
    out["evaluation"] = _evaluated(result)
    return respond(out, 201)


@api_blueprint.route("/lists/<int:list_id>", methods=["GET"])
@requires("lists:read", action="lists.view")
def get_list(list_id: int) -> ResponseReturnValue:
    return respond(list_json(lists.get(db(), list_id), detail=True))


@api_blueprint.route("/lists/<int:list_id>", methods=["PATCH"])
@requires("lists:write", action="lists.update")
def update_list(list_id: int) -> ResponseReturnValue:
    data = body()
    fields(data, {"name", "description", "applies_to"})
    row, result = conduct.update_list(db(), appliance(), state().actor, list_id, name=data.get("name"),
                                      description=data.get("description"), applies_to=data.get("applies_to"))
    out = list_json(row)
    out["evaluation"] = _evaluated(result)
    return respond(out)


@api_blueprint.route("/lists/<int:list_id>/entries", methods=["POST"])
@requires("lists:write", action="lists.entries_add")
def add_entries(list_id: int) -> ResponseReturnValue:
    data = body()
    fields(data, {"entries"}, ("entries",))
    added, result = conduct.add_entries(db(), appliance(), state().actor, list_id, data.get("entries"))
    audit_detail(entries=[e.id for e in added])
    names = user_names(db(), [state().actor.user_id])
    return respond({"entries": [entry_json(e, names) for e in added], "evaluation": _evaluated(result)}, 201)


@api_blueprint.route("/lists/<int:list_id>/entries/<int:entry_id>", methods=["PATCH"])
@requires("lists:write", action="lists.entry_change", resource_arg="list_id")
def change_entry(list_id: int, entry_id: int) -> ResponseReturnValue:
    data = body()
    entry, result = conduct.change_entry(db(), appliance(), state().actor, list_id, entry_id, data)
    audit_detail(entry_id=entry_id)
    return respond({**entry_json(entry, user_names(db(), [entry.added_by])), "evaluation": _evaluated(result)})


@api_blueprint.route("/lists/<int:list_id>/entries/<int:entry_id>", methods=["DELETE"])
@requires("lists:write", action="lists.entry_remove", resource_arg="list_id")
def remove_entry(list_id: int, entry_id: int) -> ResponseReturnValue:
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
def list_groups() -> ResponseReturnValue:
    return respond({"groups": [group_json(g, n) for g, n in groups.list_groups(db())]})


@api_blueprint.route("/groups", methods=["POST"])
@requires("groups:write", action="groups.create")
def create_group() -> ResponseReturnValue:
    data = body()
    fields(data, {"name", "description", "employee_ids"}, ("name",))
    group = conduct.create_group(db(), appliance(), state().actor, name=data.get("name"),
                                 description=data.get("description", ""), employee_ids=data.get("employee_ids"))
    audit_resource("groups", group.id)
    return respond(group_json(group, detail=True), 201)


@api_blueprint.route("/groups/<int:group_id>", methods=["GET"])
@requires("groups:read", action="groups.view")
def get_group(group_id: int) -> ResponseReturnValue:
    return respond(group_json(groups.get(db(), group_id), detail=True))


@api_blueprint.route("/groups/<int:group_id>", methods=["PATCH"])
@requires("groups:write", action="groups.update")
def update_group(group_id: int) -> ResponseReturnValue:
    data = body()
    fields(data, {"name", "description"})
    group = groups.update(db(), state().actor, group_id, name=data.get("name"), description=data.get("description"))
    return respond(group_json(group, detail=True))


@api_blueprint.route("/groups/<int:group_id>/members", methods=["POST"])
@requires("groups:write", action="groups.members_add")
def add_group_members(group_id: int) -> ResponseReturnValue:
    data = body()
    fields(data, {"employee_ids"}, ("employee_ids",))
    added, result = conduct.add_members(db(), appliance(), state().actor, group_id, data.get("employee_ids"))
    audit_detail(employee_ids=added)
    return respond({"added": added, "evaluation": _evaluated(result)})


@api_blueprint.route("/groups/<int:group_id>/members/<int:employee_id>", methods=["DELETE"])
@requires("groups:write", action="groups.member_remove", resource_arg="group_id")
def remove_group_member(group_id: int, employee_id: int) -> ResponseReturnValue:
    groups.remove_member(db(), state().actor, group_id, employee_id)
    audit_detail(employee_id=employee_id)
    return respond({"removed": employee_id})
