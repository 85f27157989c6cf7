"""Employee portal sign-in through the firm's directory (issue 24 item 4, issue 20 item 1).

The directory proves who the person is; this module decides which employee that is, and nothing more:

- LDAP: the dashboard's own check (:func:`signin.authenticate_person`: a bind as the person over LDAPS or
  StartTLS, a disabled account refused) — never its account creation or role mapping;
- OpenID Connect: the claims of an ID token the dashboard's client already checked (signature, issuer,
  audience, nonce, PKCE), from a flow started by the portal (the pending state says which side began it).

The person is matched to an **employee** by ``portal.match_by``: their e-mail address (the directory's e-mail
attribute, or the ``email`` claim unless the provider says ``email_verified: false``), or their employee
number (an LDAP attribute or an ID token claim) against the number the roster or the import recorded. No
match, an offboarded employee, a disabled or unknown directory account and a wrong password are all the same
:class:`PortalRefused` to the person (:data:`REFUSED`); the true reason is for the audit trail only. Nothing
here touches ``users``: a dashboard user who is also an employee gets an employee session that carries no
dashboard permission, beside (never instead of) their dashboard session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.auth.directory import DirectoryRefused
from appliance.auth.directory.ldap import employee_number_attribute
from appliance.services.context import Appliance
from appliance.services.directory import signin
from appliance.settings import Settings
from appliance.store.models import Employee

REFUSED = ("Sign-in refused. Check your user name and password; if they are right, ask your compliance team "
           "whether you are registered for the employee portal.")


class PortalRefused(DirectoryRefused):
    """The person may not sign in to the portal; ``message`` is the true reason (audit trail only)."""


@dataclass(frozen=True)
class DirectoryPersonRef:
    """Who the directory vouched for: ``via`` ldap or oidc, ``subject`` their sign-in name or iss|sub."""

    via: str
    subject: str
    email: str
    employee_number: str


def enabled(settings: Settings) -> tuple[bool, bool]:
    """Whether the portal offers (LDAP user name and password, the OpenID provider's button)."""
    if not settings.portal.directory_sign_in:
        return False, False
    return settings.directory.ldap.enabled, settings.directory.oidc.enabled


def _number_attribute(settings: Settings) -> str:
    if settings.portal.match_by != "employee_number":
        return ""
    return settings.portal.ldap_employee_number_attribute or employee_number_attribute(
        settings.directory.ldap, settings.roster.ldap)


def ldap_person(app: Appliance, login: str, password: str) -> DirectoryPersonRef:
    """The person this name and password belong to (PortalRefused / DirectoryUnavailable otherwise)."""
    if not enabled(app.settings)[0]:
        raise PortalRefused("directory sign-in to the portal is not enabled")
    try:
        person = signin.authenticate_person(app, login, password, number_attribute=_number_attribute(app.settings))
    except PortalRefused:
        raise
    except DirectoryRefused as exc:
        raise PortalRefused(exc.message) from None
    return DirectoryPersonRef("ldap", person.login or login.strip(), person.email.strip().lower(),
                              person.employee_number.strip())


def oidc_person(settings: Settings, claims: dict[str, Any]) -> DirectoryPersonRef:
    """The person a checked ID token vouches for."""
    email = claims.get(settings.directory.oidc.email_claim)
    if claims.get("email_verified") is False:
        email = None  # the provider itself says the address is not the person's: never match by it
    number = claims.get(settings.portal.oidc_employee_number_claim)
    return DirectoryPersonRef("oidc", f"{claims.get('iss')}|{claims.get('sub')}",
                              str(email).strip().lower() if isinstance(email, str) else "",
                              str(number).strip() if isinstance(number, (str, int)) else "")


def match_employee(session: Session, settings: Settings, person: DirectoryPersonRef) -> int:
    """The active employee this person is; PortalRefused (with the true reason) otherwise."""
    if settings.portal.match_by == "employee_number":
        if not person.employee_number:
            raise PortalRefused("the directory gives this person no employee number")
        employee = session.execute(select(Employee).where(
            Employee.external_id == person.employee_number[:100])).scalar_one_or_none()
        what = f"employee number {person.employee_number[:100]}"
    else:
        if not person.email or "@" not in person.email:
            raise PortalRefused("the directory gives this person no (verified) e-mail address")
        employee = session.execute(select(Employee).where(
            Employee.email == person.email[:254])).scalar_one_or_none()
        what = f"e-mail {person.email[:254]}"
    if employee is None:
        raise PortalRefused(f"no employee has the {what}")
    if employee.status != "active":
        raise PortalRefused(f"the employee with the {what} is offboarded")
    return int(employee.id)


__all__ = ["REFUSED", "DirectoryPersonRef", "PortalRefused", "enabled", "ldap_person", "match_employee",
           "oidc_person"]
