"""The employee's onboarding page: /onboard/<token>, no login, TLS only for credentials.

The page works without JavaScript; its one script blocks the form on a non-TLS origin (and when the
server itself sees plain HTTP it renders the form disabled). The server refuses a credential
submission that did not arrive over TLS (directly, or through a trusted proxy's
X-Forwarded-Proto: https) *before* parsing the form: nothing is read, logged or stored.
``server.dev_allow_insecure_onboarding`` lifts that for a localhost demo only.

Showing the page claims nothing (mail scanners prefetch e-mailed links); the first submission binds
the link to that browser with a cookie, and every other browser is refused from then on.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from flask import make_response, render_template, request
from flask.typing import ResponseReturnValue

from appliance.audit.writer import AuditRecord, append
from appliance.boundary.csrf import check_csrf, csrf_token
from appliance.boundary.edge import appliance, state
from appliance.boundary.routes import public
from appliance.boundary.validation import accepts, submitted
from appliance.errors import Conflict, Invalid, NotFound, TooManyRequests
from appliance.services import onboarding
from appliance.venues.base import Credentials, VenueAdapter, WalletAdapter
from appliance.web import forms, web_blueprint

CLAIM_COOKIE = "__Host-vigatra-onboard"


def _insecure_allowed() -> bool:
    app = appliance()
    return app.settings.server.dev_allow_insecure_onboarding and state().transport.local


def _usable_transport() -> bool:
    """Credentials may be entered here: TLS (direct or via a trusted proxy), or the localhost demo."""
    return state().transport.tls or _insecure_allowed()


def _event(action: str, *, outcome: str, status: int, link: onboarding.Link | None, resource_id: Any = "",
           detail: dict[str, Any] | None = None, session_: Any = None, link_id: int | None = None) -> None:
    st = state()
    info = dict(detail or {})
    if link is not None:
        info.setdefault("employee_id", link.employee_id)
        info.setdefault("link_id", link.token_id)
        link_id = link.token_id
    record = AuditRecord(
        action=action, actor_type="employee", resource_type="connections" if resource_id else "onboarding",
        resource_id=str(resource_id or (link_id or "")), ip_address=st.transport.client_ip,
        request_id=st.request_id, method=request.method, path="/onboard/<token>", status=status,
        user_agent=(request.headers.get("User-Agent") or "")[:300], outcome=outcome,
        detail=json.dumps(info, sort_keys=True, default=str) if info else "")
    if session_ is not None:
        append(session_, [record])
    else:
        appliance().record(record)


def _venues() -> tuple[list[VenueAdapter], list[WalletAdapter]]:
    registry = appliance().venues
    return registry.keyed(), registry.wallets()


def _render(token: str, link: onboarding.Link, *, selected: str | None = None, result: dict[str, Any] | None = None,
            error: str | None = None, status: int = 200) -> ResponseReturnValue:
    app = appliance()
    keyed, wallets = _venues()
    adapter: Any = None
    if selected:
        candidates: list[Any] = [*keyed, *wallets]
        adapter = next((a for a in candidates if a.id == selected), None)
    with app.store.read() as s:
        items = [{"venue": c.venue, "label": c.label, "status": c.status, "address": c.address,
                  "reason": c.status_reason} for c in onboarding.submitted(s, link)]
    html = render_template(
        "onboard.html", token=token, link=link, keyed=keyed, wallets=wallets, adapter=adapter,
        is_wallet=isinstance(adapter, WalletAdapter), result=result, error=error, submitted=items,
        egress_ip=app.settings.egress.egress_ip, allow_insecure=_insecure_allowed(),
        blocked=not _usable_transport(), csrf=csrf_token())
    return html, status


def _refused_page(message: str, status: int, *, retry_after: int | None = None) -> ResponseReturnValue:
    response = make_response(render_template("onboard_refused.html", message=message), status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


@web_blueprint.route("/onboard/<token>", methods=["GET", "POST"])
@public(accepts_data=True, action="onboarding.page")
@accepts(query=forms.OnboardQuery, form=forms.OnboardForm, in_view=True, media=("text/html",))
def onboard(token: str, query: forms.OnboardQuery) -> ResponseReturnValue:
    app = appliance()
    st = state()
    try:
        onboarding.check_throttle(app.store, st.transport.client_ip)
    except TooManyRequests as exc:
        return _refused_page(exc.message, 429, retry_after=exc.retry_after)
    if request.method == "POST" and not _usable_transport():
        # Refuse before touching the body: the credentials are not parsed, logged or stored. Each
        # refusal writes an audit row, so it counts against the address like a bad link does.
        _event("onboarding.refused_plain_http", outcome="denied", status=403, link=None)
        onboarding.record_bad_lookup(app.store, app.settings, st.transport.client_ip)
        return _refused_page("This page only accepts API keys over a secure (HTTPS) connection. Nothing you "
                             "entered was stored. Open the link again with https:// — if it does not work, "
                             "ask your compliance team.", 403)
    try:
        with app.store.read() as s:
            link = onboarding.resolve(s, token, request.cookies.get(CLAIM_COOKIE))
    except NotFound as exc:
        if isinstance(exc, onboarding.DeadLink):
            # Use of an expired, revoked or completed link: audited with the link it was.
            _event("onboarding.link_refused", outcome="denied", status=404, link=None, link_id=exc.link_id,
                   detail={"link_id": exc.link_id, "employee_id": exc.employee_id, "state": exc.state})
        onboarding.record_bad_lookup(app.store, app.settings, st.transport.client_ip)
        return _refused_page(onboarding.INVALID_LINK, 404)
    except Conflict as exc:
        return _refused_page(exc.message, 409)
    if request.method in ("GET", "HEAD"):
        return _get(token, link, query.venue)
    check_csrf()
    try:
        form = submitted(forms.OnboardForm)
    except Invalid as exc:
        return _render(token, link, error=exc.message, status=400)
    cookie = None
    if not link.claimed:
        # The first submission binds the link to this browser (see onboarding.claim).
        try:
            with app.store.unit_of_work() as s:
                cookie = onboarding.claim(s, link)
                _event("onboarding.claim", outcome="success", status=200, link=link, session_=s)
        except Conflict as exc:
            return _refused_page(exc.message, 409)
        link = replace(link, claimed=True)
    action = form.action
    if action == "finish":
        with app.store.unit_of_work() as s:
            onboarding.finish(s, link)
            _event("onboarding.finish", outcome="success", status=200, link=link, session_=s)
        response = make_response(render_template("onboard_done.html"), 200)
    elif action == "wallet":
        response = make_response(_submit_wallet(token, link, form))
    else:
        response = make_response(_submit_key(token, link, form))
    if cookie:
        # Lax, not Strict: the employee reopens the link from their (web)mail, a cross-site
        # navigation on which a Strict cookie is not sent, and would be told the link is in use
        # "in another browser". POSTs are same-origin and carry the CSRF token anyway.
        response.set_cookie(CLAIM_COOKIE, cookie, secure=True, httponly=True, samesite="Lax", path="/",
                            max_age=int(max(60, (link.expires_at.timestamp() - _now()))))
    return response


def _get(token: str, link: onboarding.Link, venue: str | None) -> ResponseReturnValue:
    app = appliance()
    if not _usable_transport():
        # Opened over plain HTTP by mistake: explain and offer no live form. The token has
        # travelled in clear: audit it.
        _event("onboarding.open_plain_http", outcome="denied", status=200, link=link)
        return _render(token, link, selected=venue)
    if not link.opened:
        with app.store.unit_of_work() as s:
            if onboarding.note_opened(s, link):
                _event("onboarding.open", outcome="success", status=200, link=link, session_=s)
    return _render(token, link, selected=venue)


def _now() -> float:
    import time

    return time.time()


def _submit_key(token: str, link: onboarding.Link, form: forms.OnboardForm) -> ResponseReturnValue:
    app = appliance()
    venue = form.venue
    keyed, _wallets = _venues()
    adapter = next((a for a in keyed if a.id == venue), None)
    if adapter is None:
        return _render(token, link, error="Choose one of the venues listed.", status=400)
    fields = {f.name: str(getattr(form, f.name, "")).strip() for f in adapter.credential_fields}
    missing = [f.label for f in adapter.credential_fields if f.required and not fields.get(f.name)]
    if missing:
        return _render(token, link, selected=venue, error=f"Fill in: {', '.join(missing)}.", status=400)
    creds = Credentials(fields.get("api_key", ""), fields.get("api_secret", ""), fields.get("passphrase", ""))
    outcome = onboarding.probe(adapter, creds, app.settings.venue(venue).unverified_policy)
    with app.store.unit_of_work() as s:
        connection = onboarding.record_key_submission(s, app.keys, link, adapter, creds, outcome,
                                                      app.keys.derive("fingerprint"))
        scope = outcome.scope.as_dict() if outcome.scope else {}
        _event("onboarding.submit_key", outcome="success" if outcome.accepted else "denied",
               status=200 if outcome.accepted else 422, link=link, resource_id=connection.id, session_=s,
               detail={"venue": venue, "accepted": outcome.accepted, "verified": outcome.verified,
                       "fingerprint": connection.key_fingerprint, "error_class": outcome.error_class,
                       "scope": {k: scope.get(k) for k in ("read", "trade", "transfer", "withdraw")}})
    del creds, fields
    result = {"accepted": outcome.accepted, "verified": outcome.verified, "message": outcome.message,
              "venue": adapter.name}
    return _render(token, link, selected=None if outcome.accepted else venue, result=result,
                   status=200 if outcome.accepted else 422)


def _submit_wallet(token: str, link: onboarding.Link, form: forms.OnboardForm) -> ResponseReturnValue:
    app = appliance()
    chain = form.chain
    _keyed, wallets = _venues()
    adapter = next((a for a in wallets if a.id == chain), None)
    if adapter is None:
        return _render(token, link, error="Choose one of the chains listed.", status=400)
    try:
        with app.store.unit_of_work() as s:
            connection = onboarding.record_wallet(s, link, adapter, form.address, form.label)
            _event("onboarding.submit_wallet", outcome="success", status=200, link=link,
                   resource_id=connection.id, session_=s, detail={"chain": chain})
    except (Invalid, Conflict) as exc:
        return _render(token, link, selected=chain, error=exc.message, status=400)
    return _render(token, link, result={"accepted": True, "verified": True, "venue": adapter.name,
                                        "message": f"{adapter.name} address added."})


