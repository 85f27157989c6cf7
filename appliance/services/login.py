"""Logging in: throttling, password and TOTP checks, access tokens, browser sessions, logout.

Throttling (SECURITY.md, NIST SP 800-63B):
- per account *name* (existing or not, so throttling reveals nothing): after
  ``auth.lockout_threshold`` consecutive failures the name is locked for ``auth.lockout_minutes``,
  doubling on each further lockout up to 24 h; a success or an admin clears it;
- per client IP: more than ``auth.ip_failures_per_window`` failures in 10 minutes locks the IP for
  10 minutes.
Counters live in ``login_throttle`` and are written in their own short transactions, so a failed
attempt is counted even though the login request itself rolls back; every process shares them.
Unknown user and wrong password get the same answer and take the same time.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import pyotp
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from appliance.auth import jwt
from appliance.auth.passwords import burn_verify, verify_password
from appliance.auth.state import bump_revision
from appliance.errors import Invalid, TooManyRequests, Unauthenticated
from appliance.services.throttle import locked_row
from appliance.settings import AuthSettings
from appliance.store.base import utcnow
from appliance.store.models import LoginThrottle, RevokedSession, User
from appliance.store.session import Store

GENERIC_FAILURE = "invalid username or password"
IP_WINDOW = dt.timedelta(minutes=10)


class MfaRequired(Unauthenticated):
    """Password was right; a TOTP code is needed to finish."""

    code = "mfa_required"


@dataclass(frozen=True)
class LoginOutcome:
    user_id: int
    username: str


def _account_key(username: str) -> str:
    return "user:" + username.strip().lower()[:200]


def _ip_key(ip: str) -> str:
    return "ip:" + ip[:64]


def check_not_throttled(store: Store, username: str, ip: str) -> None:
    now = utcnow()
    with store.read() as session:
        for key in (_account_key(username), _ip_key(ip)):
            row = session.get(LoginThrottle, key)
            if row is not None and row.locked_until is not None and row.locked_until > now:
                minutes = max(1, int((row.locked_until - now).total_seconds() // 60) + 1)
                raise TooManyRequests(f"too many failed attempts; try again in {minutes} minute(s)",
                                      retry_after=int((row.locked_until - now).total_seconds()) + 1)


def record_failure(store: Store, settings: AuthSettings, username: str, ip: str) -> bool:
    """Count a failed attempt; returns True if this failure locked the account name."""
    now = utcnow()
    locked = False
    with store.unit_of_work() as session:
        account = locked_row(session, _account_key(username), now)
        account.failures += 1
        if account.failures >= settings.lockout_threshold:
            minutes = min(settings.lockout_minutes * (2 ** account.lockouts), 24 * 60)
            account.locked_until = now + dt.timedelta(minutes=minutes)
            account.lockouts += 1
            account.failures = 0
            locked = True
        address = _ip_key(ip)
        row = locked_row(session, address, now)
        if row.window_start < now - IP_WINDOW:
            row.window_start, row.failures = now, 0
        row.failures += 1
        if row.failures > settings.ip_failures_per_window:
            row.locked_until = now + IP_WINDOW
            row.lockouts += 1
            row.failures = 0
        user = session.execute(select(User).where(User.username == username.strip().lower())).scalar_one_or_none()
        if user is not None:
            user.failed_logins += 1
            if locked:
                user.locked_until = account.locked_until
    return locked


def clear_throttle(session: Session, username: str) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == _account_key(username)))


def verify_totp(session: Session, user: User, code: str, secret: str) -> bool:
    """RFC 6238 with one step of clock drift either way; each code is accepted only once."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return False
    totp = pyotp.TOTP(secret)
    now = int(utcnow().timestamp())
    for drift in (-1, 0, 1):
        step = now // 30 + drift
        if step > user.totp_last_step and secrets.compare_digest(totp.at(step * 30), code):
            user.totp_last_step = step
            return True
    return False


def login(store: Store, settings: AuthSettings, *, username: str, password: str, ip: str,
          totp_code: str | None, open_totp_secret: object) -> LoginOutcome:
    """Check credentials; raises Unauthenticated (generic), MfaRequired or TooManyRequests.

    ``open_totp_secret(session, user) -> str`` unseals the user's TOTP secret (the key service).
    """
    if not username or not password:
        raise Invalid("username and password are required")
    check_not_throttled(store, username, ip)
    with store.unit_of_work() as session:
        user = session.execute(
            select(User).where(User.username == username.strip().lower())).scalar_one_or_none()
        if user is None or not user.is_active:
            burn_verify(password, settings)
            ok, rehash = False, None
        else:
            ok, rehash = verify_password(user.password_hash, password, settings)
        if ok and user is not None and user.mfa_enabled:
            if not totp_code:
                raise MfaRequired("a one-time code from your authenticator app is required")
            secret = open_totp_secret(session, user)  # type: ignore[operator]
            ok = verify_totp(session, user, totp_code, secret)
        if ok and user is not None:
            if rehash:
                user.password_hash = rehash
            user.failed_logins = 0
            user.locked_until = None
            user.last_login_at = utcnow()
            clear_throttle(session, user.username)
            return LoginOutcome(user.id, user.username)
    locked = record_failure(store, settings, username, ip)
    raise Unauthenticated(GENERIC_FAILURE, detail={"locked": locked})


def issue_access_token(settings: AuthSettings, key: bytes, *, user_id: int, epoch: int) -> tuple[str, int]:
    ttl = min(settings.jwt_ttl_hours, 24) * 3600
    token, _claims = jwt.issue(key, user_id=user_id, epoch=epoch, ttl_seconds=ttl, issuer=settings.jwt_issuer,
                               audience=settings.jwt_audience)
    return token, ttl


def revoke_session(session: Session, *, session_id: str, user_id: int, expires_at: dt.datetime) -> None:
    """Logout: the session id is dead in every process from the next request on."""
    if session.get(RevokedSession, session_id) is None:
        session.add(RevokedSession(session_id=session_id, user_id=user_id, expires_at=expires_at))
        session.flush()
        bump_revision(session)


def prune_throttle(session: Session, *, older_than: dt.timedelta = dt.timedelta(days=1)) -> int:
    """Forget failure counters that are neither locking anything nor recent: an attacker trying random
    account names must not grow the table without bound."""
    cutoff = utcnow() - older_than
    result = session.execute(delete(LoginThrottle).where(
        LoginThrottle.window_start < cutoff,
        (LoginThrottle.locked_until.is_(None)) | (LoginThrottle.locked_until < cutoff)))
    return int(getattr(result, "rowcount", 0) or 0)


def prune_revoked_sessions(session: Session) -> int:
    result = session.execute(delete(RevokedSession).where(RevokedSession.expires_at < utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)
