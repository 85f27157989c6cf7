"""The employee portal: one-time sign-in links and employee sessions.

- A sign-in link is 256 random bits, stored only as its SHA-256, valid ``portal.sign_in_link_minutes``
  (15), used once. It is bound to one browser: the employee who asks for a link on the sign-in page gets
  a random cookie in that browser, and the link only works there; a link printed by IT
  (``vigatra employee portal-link``) or mailed by compliance binds to the first browser that opens it.
  Opening shows a "Sign in" button; only pressing it (a POST) uses the link, so a link preview that
  fetches the page uses nothing — though it may bind an unbound link to itself, in which case the
  employee asks for a new link (the sign-in page does that in one step).
- An employee session is its own kind: a random cookie whose hash is a row of ``employee_sessions``,
  with idle and absolute expiry, ended server side at sign-out or offboarding. It never carries a
  dashboard permission, and a dashboard credential never opens the portal.
- Asking for a link by e-mail address answers the same whether or not the address is known (no
  enumeration) and is throttled per IP address.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appliance.errors import Conflict, Invalid, NotFound
from appliance.rbac.actors import Actor
from appliance.services import throttle
from appliance.settings import Settings
from appliance.store.base import utcnow
from appliance.store.models import Employee, EmployeeSession, EmployeeSignInLink
from appliance.store.session import Store

LINK_PATH = "/me/sign-in/"
INVALID_LINK = "This sign-in link is invalid, expired or already used. Ask for a new one below."
OTHER_BROWSER = ("This sign-in link belongs to another browser (the one it was asked for or first opened in). "
                 "Open it there, or ask for a new one below.")
CHANNELS = ("requested", "printed", "mailed")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def portal_url(settings: Settings) -> str:
    """The appliance's base URL, as onboarding links have it: ``server.public_url`` — never the request's
    Host header, which a caller chooses (see onboarding.public_base)."""
    from appliance.services.onboarding import public_base

    return public_base(settings)


def link_url(settings: Settings, token: str) -> str:
    return f"{portal_url(settings)}{LINK_PATH}{token}"


# -- links ----------------------------------------------------------------------------------------------

def create_link(session: Session, actor: Actor | None, settings: Settings, employee_id: int, *, channel: str,
                binding: str | None = None) -> tuple[EmployeeSignInLink, str]:
    """A new link for the employee (``binding``: the requesting browser's cookie value, if any)."""
    if channel not in CHANNELS:
        raise Invalid(f"channel must be one of {', '.join(CHANNELS)}", field="channel")
    employee = session.get(Employee, employee_id)
    if employee is None:
        raise NotFound("not found")
    if employee.status != "active":
        raise Conflict("this employee is offboarded")
    token = secrets.token_urlsafe(32)
    row = EmployeeSignInLink(
        employee_id=employee.id, token_hash=token_hash(token), channel=channel,
        binding_hash=token_hash(binding) if binding else None,
        created_by=actor.user_id if actor is not None else None,
        expires_at=utcnow() + dt.timedelta(minutes=settings.portal.sign_in_link_minutes))
    session.add(row)
    session.flush()
    return row, token


def employee_by_email(session: Session, email: str) -> Employee | None:
    address = (email or "").strip().lower()
    if not address or len(address) > 254 or "@" not in address:
        return None
    found = session.execute(select(Employee).where(Employee.email == address)).scalar_one_or_none()
    if found is None or found.status != "active":
        return None
    return found


@dataclass(frozen=True)
class OpenLink:
    link_id: int
    employee_id: int
    bound: bool
    expires_at: dt.datetime


class DeadLink(NotFound):
    """A real link that can no longer be used; the audit trail says which and why."""

    def __init__(self, row: EmployeeSignInLink, state: str) -> None:
        super().__init__(INVALID_LINK)
        self.link_id = row.id
        self.employee_id = row.employee_id
        self.state = state


class WrongBrowser(Conflict):
    def __init__(self, row: EmployeeSignInLink) -> None:
        super().__init__(OTHER_BROWSER)
        self.link_id = row.id
        self.employee_id = row.employee_id


def resolve(session: Session, token: str, binding: str | None) -> OpenLink:
    """The usable link for ``token`` in the browser presenting ``binding``; NotFound / WrongBrowser otherwise."""
    if not token or len(token) > 100:
        raise NotFound(INVALID_LINK)
    row = session.execute(select(EmployeeSignInLink).where(
        EmployeeSignInLink.token_hash == token_hash(token))).scalar_one_or_none()
    if row is None:
        raise NotFound(INVALID_LINK)
    employee = session.get(Employee, row.employee_id)
    if row.used_at is not None:
        raise DeadLink(row, "used")
    if row.expires_at <= utcnow():
        raise DeadLink(row, "expired")
    if employee is None or employee.status != "active":
        raise DeadLink(row, "offboarded")
    if row.binding_hash is not None and (not binding or not hmac.compare_digest(row.binding_hash,
                                                                               token_hash(binding))):
        raise WrongBrowser(row)
    return OpenLink(row.id, row.employee_id, row.binding_hash is not None, row.expires_at)


def bind(session: Session, link: OpenLink, binding: str) -> bool:
    """Bind an unbound link to this browser's cookie; False when another browser bound it first."""
    if link.bound:
        return True
    result = session.execute(update(EmployeeSignInLink).where(
        EmployeeSignInLink.id == link.link_id, EmployeeSignInLink.binding_hash.is_(None)).values(
        binding_hash=token_hash(binding)))
    return getattr(result, "rowcount", 0) == 1


def redeem(session: Session, settings: Settings, link: OpenLink) -> tuple[EmployeeSession, str]:
    """Use the link (once: a conditional UPDATE decides a race) and open an employee session."""
    now = utcnow()
    result = session.execute(update(EmployeeSignInLink).where(
        EmployeeSignInLink.id == link.link_id, EmployeeSignInLink.used_at.is_(None),
        EmployeeSignInLink.expires_at > now).values(used_at=now))
    if getattr(result, "rowcount", 0) != 1:
        raise NotFound(INVALID_LINK)
    return open_session(session, settings, link.employee_id, link_id=link.link_id)


def open_session(session: Session, settings: Settings, employee_id: int, *, link_id: int | None = None
                 ) -> tuple[EmployeeSession, str]:
    """A new employee session (after a used link, or a directory sign-in: ``link_id`` None); returns the row
    and the cookie value, which is stored only as its hash."""
    now = utcnow()
    token = secrets.token_urlsafe(32)
    row = EmployeeSession(employee_id=employee_id, token_hash=token_hash(token), link_id=link_id,
                          created_at=now, last_seen_at=now,
                          expires_at=now + dt.timedelta(hours=settings.portal.session_absolute_hours))
    session.add(row)
    session.flush()
    return row, token


# -- sessions ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignedIn:
    session_id: int
    employee_id: int


def session_for(store: Store, settings: Settings, token: str) -> SignedIn | None:
    """The live session a cookie names (its idle clock moved on), or None. One indexed read, and a write
    only when the last-seen time is more than a minute old."""
    if not token or len(token) > 100:
        return None
    now = utcnow()
    with store.read() as s:
        row = s.execute(select(EmployeeSession.id, EmployeeSession.employee_id, EmployeeSession.last_seen_at,
                               EmployeeSession.expires_at, EmployeeSession.ended_at, Employee.status).join(
            Employee, Employee.id == EmployeeSession.employee_id).where(
            EmployeeSession.token_hash == token_hash(token))).one_or_none()
    if row is None:
        return None
    session_id, employee_id, last_seen, expires_at, ended_at, status = row
    idle = dt.timedelta(minutes=settings.portal.session_idle_minutes)
    if ended_at is not None or expires_at <= now or last_seen + idle <= now or status != "active":
        return None
    if now - last_seen > dt.timedelta(minutes=1):
        with store.unit_of_work() as s:
            s.execute(update(EmployeeSession).where(EmployeeSession.id == session_id).values(last_seen_at=now))
    return SignedIn(int(session_id), int(employee_id))


def end_session(session: Session, session_id: int, reason: str = "signed_out") -> None:
    session.execute(update(EmployeeSession).where(EmployeeSession.id == session_id,
                                                  EmployeeSession.ended_at.is_(None)).values(
        ended_at=utcnow(), ended_reason=reason[:32]))


def end_sessions_of(session: Session, employee_id: int, reason: str) -> None:
    """Offboarding ends every portal session of the employee at once."""
    session.execute(update(EmployeeSession).where(EmployeeSession.employee_id == employee_id,
                                                  EmployeeSession.ended_at.is_(None)).values(
        ended_at=utcnow(), ended_reason=reason[:32]))


# -- throttling link requests ---------------------------------------------------------------------------------

def _throttle_key(ip: str) -> str:
    return "portal-ip:" + ip[:64]


def check_throttle(store: Store, ip: str) -> None:
    throttle.refuse_if_locked(store, _throttle_key(ip), "too many sign-in attempts from this address; try again later")


def count_attempt(store: Store, settings: Settings, ip: str) -> None:
    """Each link request and each bad link counts against the address."""
    throttle.count_failure(store, _throttle_key(ip), settings.portal.link_requests_per_window)


# -- connections from the portal ---------------------------------------------------------------------------

SELF_SERVICE_LINK = dt.timedelta(hours=1)


def self_onboarding_link(session: Session, settings: Settings, actor: Actor, employee_id: int
                         ) -> tuple[int, str]:
    """An onboarding link the signed-in employee opens at once to add, replace or fix a connection: the
    onboarding flow itself (scope probe, sealing, superseding the venue's older key), for one hour."""
    from appliance.services import onboarding
    from appliance.store.models import Connection, OnboardingToken

    has_any = session.execute(select(Connection.id).where(Connection.employee_id == employee_id).limit(1)).first()
    row, token = onboarding.create_link(session, actor, settings, employee_id,
                                        purpose="reonboard" if has_any else "initial")
    shorter = utcnow() + SELF_SERVICE_LINK
    if row.expires_at > shorter:
        session.execute(update(OnboardingToken).where(OnboardingToken.id == row.id).values(expires_at=shorter))
    return row.id, token
