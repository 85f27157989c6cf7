"""Attestations for Compliance: campaigns and their tasks, the late list, submissions and their review, the
code of ethics.

``POST /api/v1/campaigns`` (attestations:write) takes ``{"kind", "period", "due"?}`` and answers 201 with the
campaign and a task per access person; ``GET /api/v1/campaigns/<id>`` lists the tasks with their status
(open, submitted, approved, returned, late, closed). Opening a submission (``POST
/api/v1/attestations/submissions/<id>/open``, attestations:review) puts the employee in the flagged scope for the
review; ``POST .../decision`` approves or returns it (a comment is required to return). The employee's own
side is the portal (/me/tasks).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api import attestation_schemas as a
from appliance.api.common import json_value, respond
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import NoInput, accepts
from appliance.services.attestations import campaigns, review
from appliance.store.models import AttestationCampaign, AttestationSubmission, AttestationTask, CodeVersion, Employee


def _day(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def task_json(task: AttestationTask, employee: Employee) -> dict[str, Any]:
    on = campaigns.today()
    return {"id": task.id, "campaign_id": task.campaign_id, "employee_id": employee.id,
            "employee_name": employee.name, "due": task.due.isoformat(),
            "as_of": task.as_of.isoformat() if task.as_of else None, "status": campaigns.status_of(task, on),
            "days_late": campaigns.days_late(task, on), "closed_reason": task.closed_reason or None,
            "submitted_at": json_value(task.submitted_at), "reviewed_at": json_value(task.reviewed_at)}


def campaign_json(campaign: AttestationCampaign, progress: dict[str, int], version: int | None = None,
                  tasks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": campaign.id, "kind": campaign.kind, "period": campaign.period or None,
        "period_start": _day(campaign.period_start), "period_end": _day(campaign.period_end),
        "as_of": _day(campaign.as_of), "due": _day(campaign.due), "title": campaign.title,
        "code_version": version, "created_at": json_value(campaign.created_at), "created_by": campaign.created_label,
        "progress": progress, "tasks": tasks}
    return out


def _one(campaign: AttestationCampaign) -> dict[str, Any]:
    session = db()
    version = session.get(CodeVersion, campaign.code_version_id) if campaign.code_version_id else None
    return campaign_json(campaign, campaigns.progress(session, campaign).by_status,
                         version.version if version else None,
                         [task_json(t, e) for t, e in campaigns.tasks_of(session, campaign.id)])


@api_blueprint.route("/campaigns", methods=["POST"])
@requires("attestations:write", action="attestations.campaign_create")
@accepts(body=a.CampaignCreate, status=201, returns=a.CampaignOut, errors=(409,))
def create_campaign(body: a.CampaignCreate) -> ResponseReturnValue:
    """Start a campaign: a task for every active access person."""
    due = campaigns.parse_day(body.due, "due")
    campaign = campaigns.create(db(), appliance().settings, state().actor, kind=body.kind, period=body.period,
                                due=due)
    audit_resource("campaign", campaign.id)
    audit_detail(kind=campaign.kind, period=campaign.period or None)
    return respond(_one(campaign), 201)


@api_blueprint.route("/campaigns", methods=["GET"])
@requires("attestations:read", action="attestations.campaign_list")
@accepts(returns=a.CampaignList)
def list_campaigns() -> ResponseReturnValue:
    """Campaigns, newest first, with their progress."""
    session = db()
    versions = {v.id: v.version for v in campaigns.code_versions(session)}
    return respond({"campaigns": [campaign_json(p.campaign, p.by_status, versions.get(p.campaign.code_version_id or 0))
                                  for p in campaigns.listing(session)]})


@api_blueprint.route("/campaigns/<int:campaign_id>", methods=["GET"])
@requires("attestations:read", action="attestations.campaign_view", resource_arg="campaign_id")
@accepts(returns=a.CampaignOut)
def get_campaign(campaign_id: int) -> ResponseReturnValue:
    """One campaign with its tasks and their status."""
    return respond(_one(campaigns.get(db(), campaign_id)))


@api_blueprint.route("/attestations/late", methods=["GET"])
@requires("attestations:read", action="attestations.late")
@accepts(returns=a.LateList)
def late_tasks() -> ResponseReturnValue:
    """What is late and by how many days: outstanding tasks past due, then reports filed late."""
    rows = review.late_list(db())
    return respond({"late": [{"task": task_json(r.task, r.employee), "campaign_id": r.campaign.id,
                              "campaign_title": r.campaign.title, "days_late": r.days, "outstanding": r.outstanding}
                             for r in rows]})


def submission_json(row: review.Submitted, *, with_snapshot: bool = False) -> dict[str, Any]:
    sub: AttestationSubmission = row.submission
    out: dict[str, Any] = {
        "id": sub.id, "task_id": sub.task_id, "campaign_id": row.campaign.id, "campaign_title": row.campaign.title,
        "employee_id": row.employee.id, "employee_name": row.employee.name, "number": sub.number,
        "status": sub.status, "submitted_at": json_value(sub.submitted_at), "nothing_to_report": sub.nothing_to_report,
        "snapshot_sha256": sub.snapshot_sha256, "review_alert_id": sub.review_alert_id,
        "snapshot": sub.snapshot if with_snapshot else None}
    return out


@api_blueprint.route("/attestations/submissions", methods=["GET"])
@requires("attestations:review", action="attestations.submission_list")
@accepts(query=a.SubmissionQuery, returns=a.SubmissionList)
def list_submissions(query: a.SubmissionQuery) -> ResponseReturnValue:
    """Submissions (by default those waiting for review), without their content."""
    session = db()
    if query.status == "submitted":
        rows = review.awaiting(session, limit=query.limit)
    else:
        from sqlalchemy import select

        subs = session.execute(select(AttestationSubmission).where(AttestationSubmission.status == query.status)
                               .order_by(AttestationSubmission.id.desc()).limit(query.limit)).scalars()
        rows = [review.get(session, s.id) for s in subs]
    return respond({"submissions": [submission_json(r) for r in rows]})


@api_blueprint.route("/attestations/submissions/<int:submission_id>", methods=["GET"])
@requires("attestations:review", action="attestations.submission_view", resource_arg="submission_id")
@accepts(returns=a.SubmissionOut)
def get_submission(submission_id: int) -> ResponseReturnValue:
    """A submission; its frozen snapshot once it was opened for review (``POST .../open``)."""
    row = review.get(db(), submission_id)
    return respond(submission_json(row, with_snapshot=row.submission.review_alert_id is not None))


@api_blueprint.route("/attestations/submissions/<int:submission_id>/open", methods=["POST"])
@requires("attestations:review", action="attestations.submission_open", resource_arg="submission_id")
@accepts(body=NoInput, returns=a.SubmissionOut)
def open_submission(submission_id: int) -> ResponseReturnValue:
    """Open a submission for review: its frozen snapshot; the employee is put in the flagged scope for the
    review (an ``attestation_review`` alert naming it, resolved by the decision)."""
    row = review.open_for_review(db(), state().actor, submission_id)
    audit_detail(employee_id=row.employee.id, review_alert_id=row.submission.review_alert_id)
    return respond(submission_json(row, with_snapshot=True))


@api_blueprint.route("/attestations/submissions/<int:submission_id>/decision", methods=["POST"])
@requires("attestations:review", action="attestations.review_decide", resource_arg="submission_id")
@accepts(body=a.ReviewDecision, returns=a.SubmissionOut, errors=(409,))
def decide_submission(submission_id: int, body: a.ReviewDecision) -> ResponseReturnValue:
    """Approve, or return with a comment (required) for the employee to correct and resubmit."""
    app = appliance()
    session = db()
    row = review.decide(session, app.settings, state().actor, submission_id, approve=body.approve,
                        comment=body.comment)
    review.notify_employee(session, app.mailer, app.settings, row)
    audit_detail(employee_id=row.employee.id, decision=row.submission.status)
    return respond(submission_json(row))


def code_json(version: CodeVersion, campaign_id: int | None) -> dict[str, Any]:
    return {"id": version.id, "version": version.version, "title": version.title, "media_type": version.media_type,
            "sha256": version.sha256, "size": version.size, "uploaded_at": json_value(version.uploaded_at),
            "campaign_id": campaign_id}


@api_blueprint.route("/code-versions", methods=["POST"])
@requires("attestations:write", action="attestations.code_upload")
@accepts(body=a.CodeUpload, status=201, returns=a.CodeVersionOut, errors=(409,))
def upload_code(body: a.CodeUpload) -> ResponseReturnValue:
    """Publish a new version of the code of ethics (text); every access person gets an acknowledgement task."""
    due = campaigns.parse_day(body.due, "due")
    version, campaign = campaigns.upload_code(db(), appliance().settings, state().actor, title=body.title,
                                              content=body.text.encode("utf-8"), filename="code.txt", due=due)
    audit_resource("code_version", version.id)
    audit_detail(version=version.version, sha256=version.sha256, campaign_id=campaign.id)
    return respond(code_json(version, campaign.id), 201)
