"""The employee portal's pages: /me/sign-in (ask for a link, open it, use it), /me, sign-out.

Sign-in pages are public (they take a link, not a login); every other page takes an employee session only
(``@employee_portal``). A dashboard session in the same browser is ended when an employee signs in to the
portal: one browser holds one kind of session, and the dashboard never reads an employee session.
Public pages write their own audit events (a request for a link, an opened, refused or used link); the
pipeline audits every request of a signed-in employee.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from flask import make_response, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from appliance.audit.writer import AuditRecord, append
from appliance.boundary.authentication import EMPLOYEE_COOKIE
from appliance.boundary.csrf import check_csrf, csrf_token, employee_csrf_token
from appliance.boundary.edge import appliance, audit_resource, db, state
from appliance.boundary.routes import employee_portal, public
from appliance.boundary.validation import accepts, submitted
from appliance.errors import Conflict, Invalid, NotFound, TooManyRequests, Unavailable
from appliance.services import me, portal
from appliance.services.attestations import campaigns, certify
from appliance.services.valuation import read as valuation
from appliance.web import forms, web_blueprint

BIND_COOKIE = "__Host-vigatra-portal-browser"
MARKET_CHOICE = "portal_market_choice"  # a request waiting for the employee to choose one market of an event
SENT = ("If this address belongs to an employee, a sign-in link is on its way. It works for {minutes} minutes, "
        "once, and only in this browser.")


def _event(action: str, *, outcome: str, status: int, employee_id: int | None = None, link_id: int | None = None,
           detail: dict[str, Any] | None = None, session_: Any = None) -> None:
    st = state()
    info = dict(detail or {})
    if employee_id is not None:
        info["employee_id"] = employee_id
    record = AuditRecord(
        action=action, actor_type="employee" if employee_id is not None else "anonymous", resource_type="portal",
        resource_id=str(link_id or employee_id or ""), ip_address=st.transport.client_ip, request_id=st.request_id,
        method=request.method, path=request.url_rule.rule if request.url_rule is not None else request.path,
        status=status, user_agent=(request.headers.get("User-Agent") or "")[:300], outcome=outcome,
        detail=json.dumps(info, sort_keys=True, default=str) if info else "")
    if session_ is not None:
        append(session_, [record])
    else:
        appliance().record(record)


def _binding() -> tuple[str, bool]:
    """This browser's binding cookie, and whether it must be set on the response."""
    value = request.cookies.get(BIND_COOKIE, "")
    if value and len(value) <= 100:
        return value, False
    return secrets.token_urlsafe(32), True


def _with_binding(response: Any, value: str, fresh: bool) -> Any:
    if fresh:
        # Lax: the link is opened from (web)mail, a cross-site navigation. One day: longer than any link.
        response.set_cookie(BIND_COOKIE, value, secure=True, httponly=True, samesite="Lax", path="/",
                            max_age=86400)
    return response


def _page(template: str, status: int = 200, **context: Any) -> Any:
    from appliance.services.directory import portal as directory_portal

    settings = appliance().settings
    ldap_on, oidc_on = directory_portal.enabled(settings)
    response = make_response(render_template(template, csrf=csrf_token(),
                                             minutes=settings.portal.sign_in_link_minutes,
                                             mail=appliance().mailer.enabled, ldap_on=ldap_on, oidc_on=oidc_on,
                                             sso_label=settings.directory.oidc.button_label, **context), status)
    response.headers["Cache-Control"] = "no-store"
    return response


@web_blueprint.route("/me/sign-in", methods=["GET", "POST"])
@public(accepts_data=True, action="portal.sign_in_page")
@accepts(form=forms.PortalSignInForm, in_view=True, media=("text/html",))
def portal_sign_in() -> ResponseReturnValue:
    app = appliance()
    st = state()
    if request.method != "POST":
        return _page("portal_sign_in.html")
    try:
        portal.check_throttle(app.store, st.transport.client_ip)
    except TooManyRequests as exc:
        response = _page("portal_sign_in.html", 429, error=exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    check_csrf()
    portal.count_attempt(app.store, app.settings, st.transport.client_ip)
    try:
        form = submitted(forms.PortalSignInForm)
    except Invalid as exc:
        return _page("portal_sign_in.html", 400, error=exc.message)
    binding, fresh = _binding()
    email = form.email.strip()
    with app.store.unit_of_work() as s:
        employee = portal.employee_by_email(s, email)
        if employee is not None and app.mailer.enabled:
            row, token = portal.create_link(s, None, app.settings, employee.id, channel="requested", binding=binding)
            app.mailer.queue(s, to=[employee.email], subject="Your Vigatra sign-in link", purpose="portal_link",
                             text=_link_mail(portal.link_url(app.settings, token), app.settings.portal.
                                             sign_in_link_minutes))
            _event("portal.link_request", outcome="success", status=200, employee_id=employee.id, link_id=row.id,
                   detail={"channel": "requested"}, session_=s)
        else:
            # The same answer for an unknown address (no enumeration); the trail says what happened.
            _event("portal.link_request", outcome="failure", status=200,
                   detail={"reason": "unknown address" if employee is None else "no mail relay"}, session_=s)
    return _with_binding(_page("portal_sign_in.html", sent=SENT.format(
        minutes=app.settings.portal.sign_in_link_minutes)), binding, fresh)


def _link_mail(url: str, minutes: int) -> str:
    return (f"Here is your link to the Vigatra employee portal:\n\n{url}\n\n"
            f"It works once, for {minutes} minutes, in the browser you asked for it from. If you did not ask for "
            "it, ignore this message; nothing happens unless the link is opened and used.\n")


@web_blueprint.route("/me/sign-in/<token>", methods=["GET", "POST"])
@public(accepts_data=True, action="portal.sign_in_link")
@accepts(form=forms.NoFields, in_view=True, media=("text/html",))
def portal_link(token: str) -> ResponseReturnValue:
    app = appliance()
    st = state()
    try:
        portal.check_throttle(app.store, st.transport.client_ip)
    except TooManyRequests as exc:
        response = _page("portal_sign_in.html", 429, error=exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if request.method == "POST":
        check_csrf()
        try:
            submitted(forms.NoFields)
        except Invalid as exc:
            return _page("portal_sign_in.html", 400, error=exc.message)
    binding, fresh = _binding()
    try:
        with app.store.read() as s:
            link = portal.resolve(s, token, None if fresh else binding)
    except portal.WrongBrowser as exc:
        _event("portal.link_refused", outcome="denied", status=409, employee_id=exc.employee_id,
               link_id=exc.link_id, detail={"state": "other browser"})
        return _page("portal_sign_in.html", 409, error=exc.message)
    except NotFound as exc:
        if isinstance(exc, portal.DeadLink):
            _event("portal.link_refused", outcome="denied", status=404, employee_id=exc.employee_id,
                   link_id=exc.link_id, detail={"state": exc.state})
        portal.count_attempt(app.store, app.settings, st.transport.client_ip)
        return _page("portal_sign_in.html", 404, error=portal.INVALID_LINK)
    if not link.bound:
        with app.store.unit_of_work() as s:
            bound = portal.bind(s, link, binding)
            if bound:
                _event("portal.link_open", outcome="success", status=200, employee_id=link.employee_id,
                       link_id=link.link_id, session_=s)
        if not bound:
            return _page("portal_sign_in.html", 409, error=portal.OTHER_BROWSER)
    if request.method != "POST":
        return _with_binding(_page("portal_link.html", token=token), binding, fresh)
    try:
        with app.store.unit_of_work() as s:
            row, cookie = portal.redeem(s, app.settings, link)
            _event("portal.sign_in", outcome="success", status=302, employee_id=link.employee_id,
                   link_id=link.link_id, detail={"session_id": row.id}, session_=s)
    except (NotFound, Conflict):
        return _page("portal_sign_in.html", 404, error=portal.INVALID_LINK)
    response = signed_in_response(cookie)
    response.delete_cookie(BIND_COOKIE, path="/", secure=True, httponly=True, samesite="Lax")
    return response


def signed_in_response(cookie: str) -> Any:
    """The redirect to /me that carries a new employee session's cookie (a link used, or a directory sign-in)."""
    session.clear()  # one kind of session per browser: a dashboard session here ends
    response = redirect(url_for("web.portal_home"))
    response.set_cookie(EMPLOYEE_COOKIE, cookie, secure=True, httponly=True, samesite="Lax", path="/",
                        max_age=appliance().settings.portal.session_absolute_hours * 3600)
    return response


@web_blueprint.route("/me", methods=["GET"])
@employee_portal(action="portal.view")
@accepts(media=("text/html",))
def portal_home() -> ResponseReturnValue:
    employee_id = state().actor.employee_id
    assert employee_id is not None
    s = db()
    settings = appliance().settings
    employee = me.profile(s, employee_id)
    holdings = me.holdings(s, employee_id)
    txs = me.transactions(s, employee_id, limit=200)
    positions = me.positions(s, employee_id)
    matches = me.matches(s, "transaction", [t.id for t, _c in txs])
    response = make_response(render_template(
        "portal.html", employee=employee, connections=me.connections(s, employee_id), broken=me.BROKEN,
        holdings=[(b, c, v) for (b, c), v in zip(
            holdings, valuation.balance_values(s, settings, [b for b, _c in holdings]), strict=True)],
        transactions=txs, matches=matches, positions=positions, requests=me.requests(s, employee_id),
        firm_sees=me.WHAT_THE_FIRM_SEES, currency=valuation.currency_of(settings),
        tasks=certify.my_tasks(s, employee_id), task_status=campaigns.status_of,
        portal_csrf=employee_csrf_token(request.cookies.get(EMPLOYEE_COOKIE, "")), **_portal_extra()))
    response.headers["Cache-Control"] = "no-store"
    return response


def _portal_extra() -> dict[str, Any]:
    """The pre-clearance form's choices (and an event's markets to choose from, after a request named one)."""
    from appliance.settings import VENUE_IDS

    pending = session.pop(MARKET_CHOICE, None)
    return {"venues": VENUE_IDS, "market_choice": pending if isinstance(pending, dict) else None}


@web_blueprint.route("/me/sign-out", methods=["POST"])
@employee_portal(action="portal.sign_out")
@accepts(form=forms.NoFields, media=("text/html",))
def portal_sign_out() -> ResponseReturnValue:
    actor = state().actor
    session_id = int(actor.label.rsplit(":", 1)[1])
    portal.end_session(db(), session_id)
    audit_resource("portal", actor.employee_id)
    response = redirect(url_for("web.portal_sign_in"))
    response.delete_cookie(EMPLOYEE_COOKIE, path="/", secure=True, httponly=True, samesite="Lax")
    return response


@web_blueprint.route("/me/preclearances", methods=["POST"])
@employee_portal(action="portal.preclearance_create")
@accepts(form=forms.PortalRequestForm, media=("text/html",))
def portal_request(form: forms.PortalRequestForm) -> ResponseReturnValue:
    from flask import flash

    from appliance.services import preclearance
    from appliance.services.preclearance_url import SeveralMarkets, ask_from

    employee_id = state().actor.employee_id
    assert employee_id is not None
    data = {k: str(v).strip() for k, v in form.model_dump(exclude={"csrf_token"}).items()}
    try:
        ask = ask_from(appliance(), {k: v for k, v in data.items() if v})
        row = preclearance.submit(db(), appliance().settings, state().actor, employee_id, ask, via="portal")
    except SeveralMarkets as exc:
        # The page offers the event's markets to choose from, the rest of the request as it was typed.
        session[MARKET_CHOICE] = {"data": {k: v for k, v in data.items() if k != "market_choice"},
                                  "choices": [list(c) for c in exc.choices]}
        flash("Not sent yet: this Polymarket event has several markets. Choose one below.", "error")
        return redirect(url_for("web.portal_home") + "#requests")
    except (Invalid, Unavailable) as exc:
        flash(f"Not sent: {exc.message}", "error")
        return redirect(url_for("web.portal_home") + "#requests")
    audit_resource("preclearance", row.id)
    flash(f"Request #{row.id}: {row.status}. {row.decision_reason}", "success" if row.status != "denied" else "error")
    return redirect(url_for("web.portal_home") + "#requests")


@web_blueprint.route("/me/connections", methods=["POST"])
@employee_portal(action="portal.connection_onboard")
@accepts(form=forms.PortalConnectionForm, media=("text/html",))
def portal_connections(form: forms.PortalConnectionForm) -> ResponseReturnValue:
    """Add, replace or fix a connection: the onboarding page, on a one-hour link made for this session."""
    from appliance.settings import VENUE_IDS

    employee_id = state().actor.employee_id
    assert employee_id is not None
    link_id, token = portal.self_onboarding_link(db(), appliance().settings, state().actor, employee_id)
    audit_resource("onboarding", link_id)
    venue = form.venue
    target = url_for("web.onboard", token=token)
    if venue in VENUE_IDS:
        target += f"?venue={venue}"
    return redirect(target)
