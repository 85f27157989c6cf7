"""The employee's compliance tasks under /api/v1/me/tasks (an employee portal session only, like api/me.py):
read a task, declare accounts, add manual entries, certify with the typed name. Another employee's task
answers 404."""

from __future__ import annotations

from typing import Any

from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api import attestation_schemas as a
from appliance.api.common import json_value, respond
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import employee_portal
from appliance.boundary.validation import accepts
from appliance.services.attestations import campaigns, certify, snapshot
from appliance.store.models import AttestationCampaign, AttestationTask


def _employee_id() -> int:
    employee_id = state().actor.employee_id
    if employee_id is None:  # pragma: no cover - the guard admits employee sessions only
        raise RuntimeError("not an employee session")
    return employee_id


def my_task_json(task: AttestationTask, campaign: AttestationCampaign, *, content: bool = False) -> dict[str, Any]:
    session = db()
    returned = [r for r in certify.reviews(session, task.id) if r.decision == "returned"]
    out: dict[str, Any] = {
        "id": task.id, "title": campaign.title, "kind": campaign.kind, "period": campaign.period or None,
        "due": task.due.isoformat(), "as_of": task.as_of.isoformat() if task.as_of else None,
        "status": campaigns.status_of(task), "days_late": campaigns.days_late(task),
        "comment": returned[-1].comment if returned and task.status == "returned" else None, "content": None}
    if content:
        view = snapshot.view(session, appliance(), task, campaign)
        out["content"] = {"base_currency": view.currency, "basis": view.basis, "accounts": view.connections,
                          "records": view.records,
                          "declared_accounts": [snapshot.declared_json(d) for d in view.declared],
                          "manual": [snapshot.manual_json(m) for m in view.manual]}
    return out


@api_blueprint.route("/me/tasks", methods=["GET"])
@employee_portal(action="portal.tasks")
@accepts(returns=a.MyTaskList)
def my_tasks() -> ResponseReturnValue:
    return respond({"tasks": [my_task_json(t, c) for t, c in certify.my_tasks(db(), _employee_id())]})


@api_blueprint.route("/me/tasks/<int:task_id>", methods=["GET"])
@employee_portal(action="portal.task_view", resource_arg="task_id")
@accepts(returns=a.MyTaskOut)
def my_task(task_id: int) -> ResponseReturnValue:
    task, campaign = certify.my_task(db(), _employee_id(), task_id)
    return respond(my_task_json(task, campaign, content=True))


@api_blueprint.route("/me/tasks/<int:task_id>/declared", methods=["POST"])
@employee_portal(action="portal.task_declare", resource_arg="task_id")
@accepts(body=a.DeclaredCreate, status=201, returns=a.CreatedOut, errors=(409,))
def my_task_declare(task_id: int, body: a.DeclaredCreate) -> ResponseReturnValue:
    row = certify.declare_account(db(), _employee_id(), task_id, venue=body.venue, account=body.account,
                                  reason=body.reason)
    audit_detail(declared_account_id=row.id)
    return respond({"id": row.id}, 201)


@api_blueprint.route("/me/tasks/<int:task_id>/manual", methods=["POST"])
@employee_portal(action="portal.task_manual", resource_arg="task_id")
@accepts(body=a.ManualCreate, status=201, returns=a.CreatedOut, errors=(409,))
def my_task_manual(task_id: int, body: a.ManualCreate) -> ResponseReturnValue:
    data = body.model_dump()
    data["date"] = campaigns.parse_day(body.date, "date")
    row = certify.add_manual(db(), appliance().settings, _employee_id(), task_id, data)
    audit_detail(manual_entry_id=row.id)
    return respond({"id": row.id}, 201)


@api_blueprint.route("/me/tasks/<int:task_id>/certify", methods=["POST"])
@employee_portal(action="portal.task_certify", resource_arg="task_id")
@accepts(body=a.Certify, status=201, returns=a.SubmittedOut, errors=(409,))
def my_task_certify(task_id: int, body: a.Certify) -> ResponseReturnValue:
    row = certify.submit(db(), appliance(), _employee_id(), task_id, typed_name=body.typed_name,
                         nothing_to_report=body.nothing_to_report, confirm=body.confirm)
    audit_resource("attestation_task", task_id)
    audit_detail(submission_id=row.id, snapshot_sha256=row.snapshot_sha256)
    return respond({"submission_id": row.id, "number": row.number, "status": row.status,
                    "snapshot_sha256": row.snapshot_sha256, "submitted_at": json_value(row.submitted_at)}, 201)
