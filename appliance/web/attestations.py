"""Compliance's attestation pages: campaigns (create, list, progress), the code of ethics (upload, versions),
the late list, submissions waiting for review, and the review of one (which flags the employee for it)."""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.errors import Conflict, Invalid
from appliance.services.attestations import campaigns, certify, periods, review
from appliance.services.scope import flagging_alerts
from appliance.store.models import CodeVersion
from appliance.web import attestation_forms as f
from appliance.web import forms, web_blueprint


@web_blueprint.route("/attestations", methods=["GET"])
@requires("attestations:read", action="attestations.page")
@accepts(media=("text/html",))
def attestations_page() -> ResponseReturnValue:
    session = db()
    actor = state().actor
    return render_template(
        "attestations.html", campaigns=campaigns.listing(session), late=review.late_list(session),
        awaiting=review.awaiting(session) if actor.can("attestations:review") else None,
        versions=campaigns.code_versions(session), kinds=periods.KINDS, labels=periods.LABELS,
        can_write=actor.can("attestations:write"), today=campaigns.today())


@web_blueprint.route("/attestations/campaigns", methods=["POST"])
@requires("attestations:write", action="attestations.campaign_create")
@accepts(form=f.CampaignForm, media=("text/html",))
def attestations_campaign_create(form: f.CampaignForm) -> ResponseReturnValue:
    try:
        campaign = campaigns.create(db(), appliance().settings, state().actor, kind=form.kind,
                                    period=form.period.strip() or None, due=form.due)
    except (Invalid, Conflict) as exc:
        flash(f"No campaign started: {exc.message}", "error")
        return redirect(url_for("web.attestations_page"))
    audit_resource("campaign", campaign.id)
    audit_detail(kind=campaign.kind, period=campaign.period or None)
    flash(f"{campaign.title} started.", "ok")
    return redirect(url_for("web.attestations_campaign", campaign_id=campaign.id))


@web_blueprint.route("/attestations/campaigns/<int:campaign_id>", methods=["GET"])
@requires("attestations:read", action="attestations.campaign_view", resource_arg="campaign_id")
@accepts(media=("text/html",))
def attestations_campaign(campaign_id: int) -> ResponseReturnValue:
    session = db()
    campaign = campaigns.get(session, campaign_id)
    tasks = campaigns.tasks_of(session, campaign.id)
    latest = {t.id: certify.submissions(session, t.id)[-1:] for t, _e in tasks if t.submitted_at is not None}
    return render_template("attestation_campaign.html", campaign=campaign,
                           progress=campaigns.progress(session, campaign), tasks=tasks, latest=latest,
                           status_of=campaigns.status_of, days_late=campaigns.days_late, today=campaigns.today(),
                           can_review=state().actor.can("attestations:review"))


@web_blueprint.route("/attestations/code", methods=["POST"])
@requires("attestations:write", action="attestations.code_upload")
@accepts(form=f.CodeForm, media=("text/html",))
def attestations_code_upload(form: f.CodeForm) -> ResponseReturnValue:
    upload = form.file
    if upload is None or not upload.filename:
        flash("Not published: choose the code's file (PDF or text).", "error")
        return redirect(url_for("web.attestations_page"))
    try:
        version, campaign = campaigns.upload_code(db(), appliance().settings, state().actor, title=form.title,
                                                  content=upload.read(), filename=upload.filename, due=form.due)
    except (Invalid, Conflict) as exc:
        flash(f"Not published: {exc.message}", "error")
        return redirect(url_for("web.attestations_page"))
    audit_resource("code_version", version.id)
    audit_detail(version=version.version, sha256=version.sha256, campaign_id=campaign.id)
    flash(f"Code of ethics version {version.version} published; {campaign.title} started.", "ok")
    return redirect(url_for("web.attestations_campaign", campaign_id=campaign.id))


@web_blueprint.route("/attestations/code/<int:version_id>", methods=["GET"])
@requires("attestations:read", action="attestations.code_view", resource_arg="version_id")
@accepts(media=("application/pdf", "text/plain"))
def attestations_code_file(version_id: int) -> ResponseReturnValue:
    return code_response(campaigns.code_version(db(), version_id))


def code_response(version: CodeVersion) -> Response:
    """The code as uploaded: a PDF inline, or text (never rendered as HTML)."""
    mimetype = "application/pdf" if version.media_type == "application/pdf" else "text/plain"
    response = Response(version.content, mimetype=mimetype)
    if mimetype == "text/plain":
        response.headers["Content-Type"] = "text/plain; charset=utf-8"
    suffix = "pdf" if mimetype == "application/pdf" else "txt"
    response.headers["Content-Disposition"] = f'inline; filename="code-of-ethics-v{version.version}.{suffix}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@web_blueprint.route("/attestations/submissions/<int:submission_id>", methods=["GET"])
@requires("attestations:review", action="attestations.submission_view", resource_arg="submission_id")
@accepts(media=("text/html",))
def attestations_submission(submission_id: int) -> ResponseReturnValue:
    """A submission: its content once opened for review (opening is a POST: it flags the employee)."""
    session = db()
    row = review.get(session, submission_id)
    opened = row.submission.review_alert_id is not None
    return render_template("attestation_submission.html", row=row, opened=opened,
                           snap=row.submission.snapshot if opened else None,
                           reviews=certify.reviews(session, row.task.id),
                           flagging=flagging_alerts(session, row.employee.id) if opened else [])


@web_blueprint.route("/attestations/submissions/<int:submission_id>/open", methods=["POST"])
@requires("attestations:review", action="attestations.submission_open", resource_arg="submission_id")
@accepts(form=forms.NoFields, media=("text/html",))
def attestations_submission_open(submission_id: int) -> ResponseReturnValue:
    row = review.open_for_review(db(), state().actor, submission_id)
    audit_detail(employee_id=row.employee.id, review_alert_id=row.submission.review_alert_id)
    return redirect(url_for("web.attestations_submission", submission_id=submission_id))


@web_blueprint.route("/attestations/submissions/<int:submission_id>/decision", methods=["POST"])
@requires("attestations:review", action="attestations.review_decide", resource_arg="submission_id")
@accepts(form=f.DecisionForm, media=("text/html",))
def attestations_decide(submission_id: int, form: f.DecisionForm) -> ResponseReturnValue:
    app = appliance()
    session = db()
    try:
        row = review.decide(session, app.settings, state().actor, submission_id,
                            approve=form.decision == "approve", comment=form.comment)
    except (Invalid, Conflict) as exc:
        flash(f"Not decided: {exc.message}", "error")
        return redirect(url_for("web.attestations_submission", submission_id=submission_id))
    review.notify_employee(session, app.mailer, app.settings, row)
    audit_detail(employee_id=row.employee.id, decision=row.submission.status)
    flash(f"Submission #{row.submission.id} {row.submission.status}.", "ok")
    return redirect(url_for("web.attestations_campaign", campaign_id=row.campaign.id))

