"""Signing in with a user name and password: a local account, or the LDAP directory.

One entry point for the sign-in page and POST /api/v1/auth/token (:func:`sign_in`):

1. a name that belongs to a local account is checked here (argon2id), whatever the directory says: local
   accounts are the break-glass way in, and they keep working while the directory is down;
2. any other name, when ``directory.ldap.enabled``, is checked by the directory (a bind as the person);
   their roles are refreshed from their groups right then, and the account is created here at its first
   sign-in if a group gives it a role;
3. the same throttling as local accounts (per name and per address, counted before the directory is asked,
   so the appliance cannot be used to lock out or guess at directory accounts faster than it allows), and
   the same generic answer for an unknown name and a wrong password; the true reason goes to the audit trail.

A TOTP code is asked of directory users when ``directory.ldap.ask_totp`` (and they enrolled one); of users signed
in through the OpenID provider when ``directory.oidc.ask_totp`` (and they enrolled one), as a second step after
the provider's callback (:class:`OidcTotpRequired`, :func:`finish_oidc_totp`).

:func:`authenticate_person` is the part the employee portal's sign-in reuses (services/directory/portal.py): it
checks a name and password against the directory and returns the person's attributes, creating nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from appliance.auth.directory import DirectoryRefused, DirectoryUnavailable
from appliance.auth.directory.ldap import DirectoryPerson, LdapDirectory
from appliance.auth.passwords import burn_verify
from appliance.errors import Invalid, KeyProviderError, Unauthenticated
from appliance.services import login as local
from appliance.services.context import Appliance
from appliance.services.directory.accounts import DirectoryIdentity, apply_identity, audit_change, roles_for
from appliance.store.base import utcnow
from appliance.store.models import User

if TYPE_CHECKING:  # Authlib is imported only when OpenID Connect is used
    from appliance.services.directory.oidc import OidcProvider


def ldap_directory(app: Appliance) -> LdapDirectory:
    """The configured directory, with its service account's password from the key provider."""
    ldap = app.settings.directory.ldap
    try:
        password = app.keys.provider.secret(ldap.bind_password_secret)
    except KeyProviderError as exc:
        raise DirectoryUnavailable(f"the directory's service account password is missing: {exc.message}") from None
    return LdapDirectory(ldap, password)


def authenticate_person(app: Appliance, login: str, password: str, *, number_attribute: str = "") -> DirectoryPerson:
    """The directory person with this name and password (DirectoryRefused / DirectoryUnavailable otherwise);
    with ``number_attribute``, their employee number read from it too."""
    return ldap_directory(app).authenticate(login.strip(), password, number_attribute=number_attribute)


def identity_of(app: Appliance, person: DirectoryPerson) -> DirectoryIdentity:
    roles = roles_for(app.settings.directory.role_map, ldap_groups=person.groups)
    return DirectoryIdentity("ldap", person.directory_id, person.login, person.email, person.name, roles,
                             person.disabled, person.dn)


def _open_totp(app: Appliance) -> object:
    return lambda s, user: app.keys.open_text(s, user.totp_secret_sealed, table="users",
                                              column="totp_secret_sealed", row_id=user.id)


def sign_in(app: Appliance, *, username: str, password: str, ip: str, totp_code: str | None) -> local.LoginOutcome:
    """Check a name and password (and TOTP); raises Unauthenticated (generic; the reason in ``detail``),
    MfaRequired, TooManyRequests, or DirectoryUnavailable when the directory cannot answer."""
    settings = app.settings
    if not settings.directory.ldap.enabled:
        return local.login(app.store, settings.auth, username=username, password=password, ip=ip,
                           totp_code=totp_code, open_totp_secret=_open_totp(app))
    if not username or not password:
        raise Invalid("username and password are required")
    name = username.strip().lower()
    with app.store.read() as session:
        source = session.execute(select(User.source).where(User.username == name)).scalar_one_or_none()
    if source == "local":
        return local.login(app.store, settings.auth, username=username, password=password, ip=ip,
                           totp_code=totp_code, open_totp_secret=_open_totp(app))
    local.check_not_throttled(app.store, username, ip)
    if source not in (None, "ldap"):
        return _refuse(app, username, ip, password, f"the name belongs to a {source} account (no password here)")
    try:
        person = authenticate_person(app, username, password)
    except DirectoryRefused as exc:
        return _refuse(app, username, ip, password, exc.message)
    identity = identity_of(app, person)
    try:
        with app.store.unit_of_work() as session:
            user, change = apply_identity(session, identity, create=True)
            audit_change(session, change, source="ldap", via="sign-in")
    except DirectoryRefused as exc:
        return _refuse(app, username, ip, password, exc.message)
    if user is None or not identity.roles:
        return _refuse(app, username, ip, password, "no directory group of this account is mapped to a role "
                                                    "(directory.role_map)", count=False)
    with app.store.unit_of_work() as session:
        user = session.get(User, user.id)
        if user is None or not user.is_active:
            why = "the account was disabled here by an admin" if user is not None else "the account vanished"
            return _refuse(app, username, ip, password, why, count=False)
        ok = True
        if settings.directory.ldap.ask_totp and user.mfa_enabled:
            if not totp_code:
                raise local.MfaRequired("a one-time code from your authenticator app is required")
            sealed = user.totp_secret_sealed
            ok = sealed is not None and local.verify_totp(session, user, totp_code, app.keys.open_text(
                session, sealed, table="users", column="totp_secret_sealed", row_id=user.id))
        if ok:
            user.failed_logins = 0
            user.locked_until = None
            user.last_login_at = utcnow()
            local.clear_throttle(session, user.username)
            return local.LoginOutcome(user.id, user.username)
    return _refuse(app, username, ip, password, "wrong one-time code")


def _refuse(app: Appliance, username: str, ip: str, password: str, reason: str, *, count: bool = True
            ) -> local.LoginOutcome:
    """The generic failure, counted like a local one (the reason is for the audit trail only)."""
    burn_verify(password, app.settings.auth)
    locked = local.record_failure(app.store, app.settings.auth, username, ip) if count else False
    raise Unauthenticated(local.GENERIC_FAILURE, detail={"locked": locked, "reason": reason[:300]})


def oidc_provider(app: Appliance) -> OidcProvider:
    """The configured OpenID provider, with the client secret from the key provider (none for a public client)."""
    from appliance.services.directory.oidc import OidcProvider
    from appliance.venues.egress import Egress

    oidc = app.settings.directory.oidc
    secret = None if oidc.client_auth == "none" else app.keys.provider.secret(oidc.client_secret_name)
    return OidcProvider(app.settings, secret, Egress(app.settings))


def oidc_identity(app: Appliance, claims: dict[str, Any]) -> DirectoryIdentity:
    oidc = app.settings.directory.oidc
    groups = claims.get(oidc.groups_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list):
        raise DirectoryRefused(f"the ID token's {oidc.groups_claim} claim is not a list")
    roles = roles_for(app.settings.directory.role_map, claim_groups=[str(g) for g in groups])
    login = str(claims.get(oidc.username_claim) or "")
    if not login:
        raise DirectoryRefused(f"the ID token has no {oidc.username_claim} claim")
    return DirectoryIdentity("oidc", f"{claims['iss']}|{claims['sub']}", login, str(claims.get(oidc.email_claim) or ""),
                             str(claims.get(oidc.name_claim) or ""), roles)


def sign_in_oidc(app: Appliance, claims: dict[str, Any], *, ip: str) -> local.LoginOutcome:
    """The user a checked ID token vouches for: created at the first sign-in when a group gives a role, roles
    refreshed at each one. Raises Unauthenticated (generic; the reason in ``detail``)."""
    try:
        identity = oidc_identity(app, claims)
        with app.store.unit_of_work() as session:
            user, change = apply_identity(session, identity, create=True)
            audit_change(session, change, source="oidc", via="sign-in")
    except DirectoryRefused as exc:
        raise Unauthenticated(local.GENERIC_FAILURE, detail={"reason": exc.message[:300]}) from None
    if user is None or not identity.roles:
        raise Unauthenticated(local.GENERIC_FAILURE, detail={
            "reason": "no group in the ID token is mapped to a role (directory.role_map)"})
    with app.store.unit_of_work() as session:
        current = session.get(User, user.id)
        if current is None or not current.is_active:
            raise Unauthenticated(local.GENERIC_FAILURE, detail={"reason": "the account is disabled here"})
        if app.settings.directory.oidc.ask_totp and current.mfa_enabled:
            # The provider vouched for the person; their Vigatra TOTP code is asked next (finish_oidc_totp).
            raise OidcTotpRequired(current.id, current.totp_last_step)
        current.last_login_at = utcnow()
        return local.LoginOutcome(current.id, current.username)


class OidcTotpRequired(local.MfaRequired):
    """The provider's ID token checked out; the user enrolled TOTP and directory.oidc.ask_totp asks for it.

    ``step`` is the user's last accepted TOTP step at this moment: the pending second step is good only while it
    is unchanged, so once a code was accepted (here or anywhere) the same pending step cannot be used again."""

    def __init__(self, user_id: int, step: int) -> None:
        super().__init__("a one-time code from your authenticator app is required")
        self.user_id = user_id
        self.step = step


def finish_oidc_totp(app: Appliance, *, user_id: int, step: int, code: str, ip: str) -> local.LoginOutcome:
    """The second step of an OpenID sign-in with ask_totp: the code for the user the provider vouched for.
    Counted and throttled like a password sign-in; Unauthenticated (generic; the reason in ``detail``)."""
    with app.store.read() as session:
        user = session.get(User, user_id)
        username = user.username if user is not None else ""
    local.check_not_throttled(app.store, username, ip)
    with app.store.unit_of_work() as session:
        user = session.get(User, user_id)
        why = ""
        if user is None or not user.is_active:
            why = "the account is disabled here"
        elif not user.mfa_enabled or user.totp_secret_sealed is None:
            why = "the account has no TOTP enrolled any more"
        elif user.totp_last_step != step:
            why = "the pending sign-in step was already used (or a code was accepted since)"
        elif not local.verify_totp(session, user, code, app.keys.open_text(
                session, user.totp_secret_sealed, table="users", column="totp_secret_sealed", row_id=user.id)):
            why = "wrong one-time code"
        if not why and user is not None:
            user.failed_logins = 0
            user.locked_until = None
            user.last_login_at = utcnow()
            local.clear_throttle(session, user.username)
            return local.LoginOutcome(user.id, user.username)
    locked = local.record_failure(app.store, app.settings.auth, username, ip) if username else False
    raise Unauthenticated(local.GENERIC_FAILURE, detail={"locked": locked, "reason": why})


def failure_detail(exc: Unauthenticated) -> str:
    """The audit detail of a failed sign-in: whether it locked the name, and the true reason when the directory
    gave one (never shown to the person)."""
    detail = {k: exc.detail[k] for k in ("locked", "reason") if exc.detail.get(k)}
    return json.dumps(detail, sort_keys=True) if detail else ""


__all__ = ["OidcTotpRequired", "authenticate_person", "failure_detail", "finish_oidc_totp", "identity_of",
           "ldap_directory", "oidc_identity", "oidc_provider", "sign_in", "sign_in_oidc"]
