"""The compliance side of pre-clearance: the queue of pending requests, decisions with a comment, and the
history (per employee with ?employee_id=)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from appliance.boundary.edge import appliance, audit_detail, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.errors import Conflict, Invalid
from appliance.services import preclearance
from appliance.store.models import Employee
from appliance.web import forms, web_blueprint


@web_blueprint.route("/preclearances", methods=["GET"])
@requires("preclearance:read", action="preclearance.queue")
@accepts(query=forms.PreclearanceQueueQuery, media=("text/html",))
def preclearance_queue(query: forms.PreclearanceQueueQuery) -> ResponseReturnValue:
    session = db()
    employee_id = query.employee_id
    pending = preclearance.listing(session, status="pending", employee_id=employee_id)
    history = [r for r in preclearance.listing(session, employee_id=employee_id, limit=200) if r.status != "pending"]
    ids = {r.employee_id for r in pending + history}
    names = {e.id: e.name for e in session.query(Employee).filter(Employee.id.in_(ids))} if ids else {}
    return render_template("preclearances.html", pending=pending, history=history, names=names,
                           can_decide=state().actor.can("preclearance:decide"), employee_id=employee_id)


@web_blueprint.route("/preclearances/<int:request_id>/decision", methods=["POST"])
@requires("preclearance:decide", action="preclearance.decide", resource_arg="request_id")
@accepts(form=forms.PreclearanceDecisionForm, media=("text/html",))
def preclearance_decide(request_id: int, form: forms.PreclearanceDecisionForm) -> ResponseReturnValue:
    app = appliance()
    session = db()
    try:
        row = preclearance.decide(session, app.settings, state().actor, request_id,
                                  approve=form.decision == "approve", comment=form.comment)
    except (Invalid, Conflict) as exc:
        flash(f"Request #{request_id} not decided: {exc.message}", "error")
        return redirect(url_for("web.preclearance_queue"))
    preclearance.notify_decision(session, app.mailer, app.settings, row)
    audit_detail(employee_id=row.employee_id, status=row.status)
    flash(f"Request #{row.id} {row.status}.", "success")
    return redirect(url_for("web.preclearance_queue"))
