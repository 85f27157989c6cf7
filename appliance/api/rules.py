"""Conduct rules and their evaluation."""

from __future__ import annotations

from typing import Any

from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from appliance.api import api_blueprint
from appliance.api.common import body, fields, json_value, respond
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.errors import Invalid
from appliance.services import conduct
from appliance.services.rules import catalogue
from appliance.services.rules.common import change_json, describe_audience, history, user_names
from appliance.store.models import ConductList, Rule, UnvaluedRecord

RULE_FIELDS = frozenset({"name", "kind", "params", "applies_to", "severity", "enabled"})


def rule_json(rule: Rule, *, detail: bool = False) -> dict[str, Any]:
    session = db()
    names = user_names(session, [rule.created_by, rule.updated_by])
    list_names = dict(session.execute(select(ConductList.id, ConductList.name)).all()) \
        if rule.params.get("list_id") else {}
    out: dict[str, Any] = {
        "id": rule.id, "name": rule.name, "kind": rule.kind, "params": rule.params, "severity": rule.severity,
        "enabled": rule.enabled, "applies_to": rule.applies_to,
        "applies_to_text": describe_audience(session, rule.applies_to),
        "description": catalogue.describe(rule, list_names), "alert_kind": catalogue.ALERT_KIND[rule.kind],
        "list_id": rule.list_id, "list_name": list_names.get(rule.list_id or 0),
        "version": rule.version, "created_at": json_value(rule.created_at),
        "created_by": names.get(rule.created_by or 0, ""), "updated_at": json_value(rule.updated_at),
        "updated_by": names.get(rule.updated_by or 0, ""), "evaluated_at": json_value(rule.evaluated_at),
    }
    if detail:
        changes = history(session, "rule", rule.id)
        out["history"] = [change_json(c, user_names(session, [c.changed_by for c in changes])) for c in changes]
        out["could_not_be_valued"] = int(session.execute(select(func.count()).select_from(UnvaluedRecord).where(
            UnvaluedRecord.rule_id == rule.id, UnvaluedRecord.valued_at.is_(None))).scalar_one())
    return out


@api_blueprint.route("/rules", methods=["GET"])
@requires("rules:read", action="rules.list")
def list_rules() -> ResponseReturnValue:
    return respond({"rules": [rule_json(r) for r in catalogue.list_rules(db())]})


@api_blueprint.route("/rules", methods=["POST"])
@requires("rules:write", action="rules.create")
def create_rule() -> ResponseReturnValue:
    data = body()
    fields(data, RULE_FIELDS, ("name", "kind"))
    rule, result = conduct.create_rule(db(), appliance(), state().actor, **{k: v for k, v in data.items()
                                                                          if k in RULE_FIELDS})
    audit_resource("rules", rule.id)
    audit_detail(kind=rule.kind, alerts_raised=len(result.alert_ids) or None)
    return respond({**rule_json(rule), "evaluation": result.summary()}, 201)


@api_blueprint.route("/rules/<int:rule_id>", methods=["GET"])
@requires("rules:read", action="rules.view")
def get_rule(rule_id: int) -> ResponseReturnValue:
    return respond(rule_json(catalogue.get(db(), rule_id), detail=True))


@api_blueprint.route("/rules/<int:rule_id>", methods=["PATCH"])
@requires("rules:write", action="rules.update")
def update_rule(rule_id: int) -> ResponseReturnValue:
    data = body()
    fields(data, RULE_FIELDS - {"kind"})
    rule, result = conduct.update_rule(db(), appliance(), state().actor, rule_id, **data)
    audit_detail(version=rule.version, alerts_raised=len(result.alert_ids) or None)
    return respond({**rule_json(rule), "evaluation": result.summary()})


@api_blueprint.route("/rules/evaluate", methods=["POST"])
@requires("rules:write", action="rules.evaluate")
def evaluate_rules() -> ResponseReturnValue:
    """Evaluate again over the whole history: every enabled rule, or one; every employee, or one."""
    data = body()
    fields(data, {"rule_id", "employee_id"})
    ids: dict[str, list[int] | None] = {}
    for name in ("rule_id", "employee_id"):
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise Invalid(f"{name} must be an id", field=name)
        ids[name] = [value] if value is not None else None
    result = conduct.reevaluate(db(), appliance(), rule_ids=ids["rule_id"], employee_ids=ids["employee_id"])
    audit_detail(**{k: v for k, v in data.items() if v is not None}, alerts_raised=len(result.alert_ids))
    return respond(result.summary())
