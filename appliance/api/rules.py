"""Conduct rules and their evaluation."""

from __future__ import annotations

from typing import Any

from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from appliance.api import api_blueprint
from appliance.api import conduct_schemas as c
from appliance.api.common import json_value, respond
from appliance.api.lists import audience_in, audience_json
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.services import conduct
from appliance.services.rules import catalogue
from appliance.services.rules.common import change_json, describe_audience, history, user_names
from appliance.store.models import ConductList, Rule, UnvaluedRecord


def rule_json(rule: Rule, *, detail: bool = False) -> dict[str, Any]:
    session = db()
    names = user_names(session, [rule.created_by, rule.updated_by])
    list_names = dict(session.execute(select(ConductList.id, ConductList.name)).all()) \
        if rule.params.get("list_id") else {}
    out: dict[str, Any] = {
        "id": rule.id, "name": rule.name, "kind": rule.kind, "params": rule.params, "severity": rule.severity,
        "enabled": rule.enabled, "applies_to": audience_json(rule.applies_to),
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
@accepts(returns=c.RuleList)
def list_rules() -> ResponseReturnValue:
    """The conduct rules."""
    return respond({"rules": [rule_json(r) for r in catalogue.list_rules(db())]})


@api_blueprint.route("/rules", methods=["POST"])
@requires("rules:write", action="rules.create")
@accepts(body=c.RuleCreate, returns=c.RuleChanged, status=201, errors=(409,))
def create_rule(body: c.RuleCreate) -> ResponseReturnValue:
    """A new rule, evaluated over the whole history at once when enabled."""
    rule, result = conduct.create_rule(db(), appliance(), state().actor, name=body.name, kind=body.kind,
                                       params=_params(body.params), applies_to=audience_in(body.applies_to),
                                       severity=body.severity, enabled=body.enabled)
    audit_resource("rules", rule.id)
    audit_detail(kind=rule.kind, alerts_raised=len(result.alert_ids) or None)
    return respond({**rule_json(rule), "evaluation": result.summary()}, 201)


@api_blueprint.route("/rules/<int:rule_id>", methods=["GET"])
@requires("rules:read", action="rules.view")
@accepts(returns=c.RuleDetail)
def get_rule(rule_id: int) -> ResponseReturnValue:
    """One rule with its history and the records it could not value yet."""
    return respond(rule_json(catalogue.get(db(), rule_id), detail=True))


@api_blueprint.route("/rules/<int:rule_id>", methods=["PATCH"])
@requires("rules:write", action="rules.update")
@accepts(body=c.RuleUpdate, returns=c.RuleChanged, errors=(409,))
def update_rule(rule_id: int, body: c.RuleUpdate) -> ResponseReturnValue:
    """Change a rule (a new version, evaluated over the whole history when enabled)."""
    rule, result = conduct.update_rule(db(), appliance(), state().actor, rule_id, name=body.name,
                                       params=_params(body.params), applies_to=audience_in(body.applies_to),
                                       severity=body.severity, enabled=body.enabled)
    audit_detail(version=rule.version, alerts_raised=len(result.alert_ids) or None)
    return respond({**rule_json(rule), "evaluation": result.summary()})


@api_blueprint.route("/rules/evaluate", methods=["POST"])
@requires("rules:write", action="rules.evaluate")
@accepts(body=c.RulesEvaluate, returns=c.EvaluationOut)
def evaluate_rules(body: c.RulesEvaluate) -> ResponseReturnValue:
    """Evaluate again over the whole history: every enabled rule, or one; every employee, or one."""
    result = conduct.reevaluate(db(), appliance(), rule_ids=[body.rule_id] if body.rule_id is not None else None,
                                employee_ids=[body.employee_id] if body.employee_id is not None else None)
    audit_detail(**body.model_dump(exclude_none=True), alerts_raised=len(result.alert_ids))
    return respond(result.summary())


def _params(given: c.RuleParams | None) -> dict[str, Any] | None:
    """The parameters as given (left-out ones absent: the kind's defaults apply)."""
    return given.model_dump(exclude_unset=True) if given is not None else None
