"""Employee onboarding: one-time links, key submission with a scope probe, wallets.

- A link's token is 256 random bits, stored only as its SHA-256, shown once, and expires
  (``onboarding.link_ttl_days``). The first browser that submits anything on it claims it (a random
  cookie whose hash is stored); another browser is refused from then on. Merely showing the page
  claims nothing, so a mail scanner's prefetch does not lock the employee out. "Finish" completes
  the link; it is dead afterwards.
  Unknown or expired tokens are throttled per IP, so links cannot be guessed.
- A submitted key is probed *before* anything is written (the probe is a network call; no database
  lock is held during it). A read-only key is stored sealed; anything else is recorded as a
  rejected attempt without its secrets, and the employee gets the venue's regenerate instructions
  and may try again on the same link.
- A re-onboarding submission supersedes the employee's earlier connections to the same venue
  (they stop being polled; their data stays). Their balances and positions still open are closed at that
  moment: from then on the new connection reads the account, and the holdings, values and reports that read
  what is held now count it once, not under both connections.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appliance.audit.writer import AuditRecord, append
from appliance.errors import (
    Conflict,
    Invalid,
    NotFound,
    VenueAuthError,
    VenueBadData,
    VenueError,
    VenuePermissionError,
)
from appliance.rbac.actors import Actor
from appliance.services import throttle
from appliance.settings import Settings
from appliance.store.base import utcnow
from appliance.store.models import BalanceSnapshot, Connection, Employee, OnboardingToken, PredictionPosition
from appliance.store.session import Store
from appliance.venues.base import Credentials, Scope, VenueAdapter, WalletAdapter
from appliance.venues.scope_policy import decide

INVALID_LINK = "This onboarding link is invalid, expired or already used. Ask your compliance team for a new one."
# Connections a new submission for the same venue replaces.
SUPERSEDABLE = ("active", "degraded", "broken", "reonboarding_required", "pending")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_link(session: Session, actor: Actor, settings: Settings, employee_id: int, *,
                purpose: str = "initial") -> tuple[OnboardingToken, str]:
    if purpose not in ("initial", "reonboard"):
        raise Invalid("purpose is initial or reonboard", field="purpose")
    employee = session.get(Employee, employee_id)
    if employee is None:
        raise NotFound("not found")
    if employee.status == "offboarded":
        raise Conflict("this employee is offboarded")
    token = secrets.token_urlsafe(32)
    row = OnboardingToken(employee_id=employee.id, token_hash=token_hash(token), purpose=purpose,
                          created_by=actor.user_id,
                          expires_at=utcnow() + dt.timedelta(days=settings.onboarding.link_ttl_days))
    session.add(row)
    session.flush()
    return row, token


def link_url(settings: Settings, token: str) -> str:
    """The link to hand out, always under :func:`public_base`: never the request's Host header, which
    anyone can set (``Host: evil.example`` would hand the employee a link to someone else's server)."""
    return f"{public_base(settings)}/onboard/{token}"


def public_base(settings: Settings) -> str:
    """``server.public_url``; without one, the localhost demo's own address when it serves onboarding
    over plain HTTP, else https:// and this machine's name (what `vigatra init` proposes; `vigatra
    doctor` says to set it). Links are https:// unless the demo explicitly allows plain HTTP: behind
    the TLS front waitress sees plain HTTP, and an http:// link would carry the token in clear."""
    server = settings.server
    base = server.public_url.rstrip("/")
    if not base and server.dev_allow_insecure_onboarding:
        base = f"http://{server.host if ':' not in server.host else '[' + server.host + ']'}:{server.port}"
    if not base:
        base = default_public_url()
    if base.lower().startswith("http://") and not server.dev_allow_insecure_onboarding:
        base = "https://" + base[len("http://"):]
    return base


@functools.lru_cache(maxsize=1)
def default_public_url() -> str:
    """https:// and this machine's fully qualified name (asked once: the lookup may wait on DNS)."""
    return f"https://{socket.getfqdn()}"


def revoke_link(session: Session, token_id: int) -> OnboardingToken:
    row = session.get(OnboardingToken, token_id)
    if row is None:
        raise NotFound("not found")
    if row.revoked_at is None and row.completed_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def list_links(session: Session, employee_id: int) -> list[OnboardingToken]:
    return list(session.execute(select(OnboardingToken).where(OnboardingToken.employee_id == employee_id)
                                .order_by(OnboardingToken.id.desc())).scalars())


def link_state(row: OnboardingToken, now: dt.datetime | None = None) -> str:
    now = now or utcnow()
    if row.revoked_at is not None:
        return "revoked"
    if row.completed_at is not None:
        return "completed"
    if row.expires_at <= now:
        return "expired"
    return "open"


# -- resolving a link (public, throttled) -------------------------------------------------------

def _throttle_key(ip: str) -> str:
    return "onboard-ip:" + ip[:64]


def check_throttle(store: Store, ip: str) -> None:
    throttle.refuse_if_locked(store, _throttle_key(ip), "too many invalid links from this address; try again later")


def record_bad_lookup(store: Store, settings: Settings, ip: str) -> None:
    throttle.count_failure(store, _throttle_key(ip), settings.onboarding.failed_lookups_per_window)


@dataclass(frozen=True)
class Link:
    """A usable link as the onboarding page needs it (no ORM object crosses the probe)."""

    token_id: int
    employee_id: int
    purpose: str
    claimed: bool
    expires_at: dt.datetime
    opened: bool = False  # the page was shown at least once


class DeadLink(NotFound):
    """A real link that can no longer be used (expired, revoked or completed): the employee sees the
    same answer as for an unknown token, the audit trail records which link it was and why."""

    def __init__(self, row: OnboardingToken, state: str) -> None:
        super().__init__(INVALID_LINK)
        self.link_id = row.id
        self.employee_id = row.employee_id
        self.state = state


def resolve(session: Session, token: str, claim: str | None) -> Link:
    """The open link for ``token`` presented with the browser's claim cookie; NotFound otherwise."""
    if not token or len(token) > 100:
        raise NotFound(INVALID_LINK)
    row = session.execute(select(OnboardingToken).where(
        OnboardingToken.token_hash == token_hash(token))).scalar_one_or_none()
    if row is None:
        raise NotFound(INVALID_LINK)
    state = link_state(row)
    if state != "open":
        raise DeadLink(row, state)
    if row.claim_hash is not None and (claim is None or not hmac.compare_digest(row.claim_hash, token_hash(claim))):
        raise Conflict("This link is already in use in another browser. Continue there, or ask your compliance "
                       "team for a new link.")
    return Link(row.id, row.employee_id, row.purpose, row.claim_hash is not None, row.expires_at,
                row.last_used_at is not None)


def note_opened(session: Session, link: Link) -> bool:
    """Mark the link as opened; True for the first opening only (the one worth an audit event)."""
    if link.opened:
        return False
    result = session.execute(update(OnboardingToken).where(
        OnboardingToken.id == link.token_id, OnboardingToken.last_used_at.is_(None)).values(last_used_at=utcnow()))
    return getattr(result, "rowcount", 0) == 1


def claim(session: Session, link: Link) -> str | None:
    """Bind an unclaimed link to this browser; returns the cookie value to set (None if claimed).

    Called on the browser's first submission, not when the page is shown: mail security scanners
    and link previews fetch e-mailed links before the employee does, and must not take the link.
    """
    if link.claimed:
        return None
    value = secrets.token_urlsafe(32)
    result = session.execute(update(OnboardingToken).where(
        OnboardingToken.id == link.token_id, OnboardingToken.claim_hash.is_(None)).values(
        claim_hash=token_hash(value), last_used_at=utcnow()))
    if getattr(result, "rowcount", 0) != 1:
        raise Conflict("This link has just been used in another browser. Continue there, or ask your "
                       "compliance team for a new link.")
    return value


def finish(session: Session, link: Link) -> None:
    row = session.get(OnboardingToken, link.token_id)
    if row is not None and row.completed_at is None:
        row.completed_at = utcnow()
        session.flush()


def submitted(session: Session, link: Link) -> list[Connection]:
    return list(session.execute(select(Connection).where(Connection.onboarding_token_id == link.token_id)
                                .order_by(Connection.id)).scalars())


# -- submissions --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeOutcome:
    accepted: bool
    verified: bool
    message: str
    scope: Scope | None
    error_class: str | None = None


def probe(adapter: VenueAdapter, creds: Credentials, policy: str) -> ProbeOutcome:
    """Test the key's scope at the venue (network call: run it outside any transaction)."""
    try:
        scope = adapter.probe_scope(creds)
    except VenueAuthError:
        return ProbeOutcome(False, False, f"{adapter.name} did not accept this key: check that you copied the key "
                            "and secret correctly (and the passphrase, if any), and that the key is activated.",
                            None, "authentication")
    except VenuePermissionError as exc:
        # The key works but the venue refused the permission query: the adapter's message names the
        # permission to add (e.g. OKX 50120), which is what the employee must do.
        return ProbeOutcome(False, False, f"{adapter.name} accepted this key but refused to show its permissions: "
                            f"{exc.message.removeprefix(adapter.id + ': ')}", None, "permission")
    except VenueBadData:
        # Also what a secret in the wrong format looks like (it cannot be used to sign, so the
        # adapter never gets a sensible answer): "try again later" alone would send the employee
        # round in circles with the same bad secret.
        return ProbeOutcome(False, False, f"{adapter.name} could not check this key. Check that you copied the "
                            "whole key and secret exactly as shown (and the passphrase, if any); if they are "
                            "right, please try again in a few minutes.", None, "bad_data")
    except VenueError as exc:
        return ProbeOutcome(False, False, f"{adapter.name} could not be reached to check this key "
                            f"({exc.error_class.replace('_', ' ')}). Please try again in a few minutes.",
                            None, exc.error_class)
    decision = decide(adapter, scope, policy)
    return ProbeOutcome(decision.accepted, decision.verified, decision.message, scope)


def fingerprint(key: bytes, api_key: str) -> str:
    return hmac.new(key, api_key.encode(), hashlib.sha256).hexdigest()[:16]


def record_key_submission(session: Session, keys: Any, link: Link, adapter: VenueAdapter, creds: Credentials,
                          outcome: ProbeOutcome, fingerprint_key: bytes) -> Connection:
    """Store the outcome: the sealed key when accepted, a rejected attempt (no secrets) otherwise."""
    from appliance.services.keys import seal_credentials

    employee = session.get(Employee, link.employee_id)
    if employee is None or employee.status == "offboarded":
        raise NotFound(INVALID_LINK)
    scope = outcome.scope.as_dict() if outcome.scope is not None else None
    connection = Connection(
        employee_id=link.employee_id, kind=adapter.kind, venue=adapter.id, label=adapter.name,
        status="pending" if outcome.accepted else "rejected",
        status_reason="" if outcome.accepted else outcome.message[:500],
        key_fingerprint=fingerprint(fingerprint_key, creds.api_key), scope_verified=outcome.verified,
        scope=scope, scope_checked_at=utcnow(), onboarding_token_id=link.token_id, next_poll_at=utcnow())
    if outcome.accepted:
        _supersede(session, link.employee_id, adapter.id, address="")
    session.add(connection)
    session.flush()
    if outcome.accepted:
        seal_credentials(session, keys, connection, creds.api_key, creds.api_secret, creds.passphrase or None)
    _touch(session, link)
    return connection


def record_wallet(session: Session, link: Link, adapter: WalletAdapter, address: str, label: str) -> Connection:
    employee = session.get(Employee, link.employee_id)
    if employee is None or employee.status == "offboarded":
        raise NotFound(INVALID_LINK)
    canonical = adapter.validate_address(address.strip())
    existing = session.execute(select(Connection).where(
        Connection.employee_id == link.employee_id, Connection.venue == adapter.id, Connection.address == canonical,
        Connection.status.in_(SUPERSEDABLE))).scalars().first()
    if existing is not None:
        raise Conflict(f"this {adapter.name} address is already registered")
    connection = Connection(employee_id=link.employee_id, kind=adapter.kind, venue=adapter.id,
                            label=(label.strip() or adapter.name)[:200], status="pending", address=canonical,
                            scope_verified=True, onboarding_token_id=link.token_id, next_poll_at=utcnow())
    session.add(connection)
    session.flush()
    _touch(session, link)
    return connection


def _supersede(session: Session, employee_id: int, venue: str, *, address: str) -> None:
    replaced = list(session.execute(select(Connection.id).where(
        Connection.employee_id == employee_id, Connection.venue == venue, Connection.address == address,
        Connection.status.in_(SUPERSEDABLE))).scalars())
    if not replaced:
        return
    now = utcnow()
    session.execute(update(Connection).where(Connection.id.in_(replaced)).values(
        status="superseded", status_reason="replaced by a newer key", next_poll_at=None,
        api_key_sealed=None, api_secret_sealed=None, passphrase_sealed=None))
    for table in (BalanceSnapshot, PredictionPosition):
        session.execute(update(table).where(table.connection_id.in_(replaced), table.valid_to.is_(None))
                        .values(valid_to=now))


def _touch(session: Session, link: Link) -> None:
    session.execute(update(OnboardingToken).where(OnboardingToken.id == link.token_id).values(
        last_used_at=utcnow()))


def audit_expired_links(session: Session, *, limit: int = 500) -> int:
    """Write one audit event for each link that expired without being finished or revoked (a poller job).

    Generation and use are audited when they happen; expiry happens by itself, so it is recorded here,
    once per link. Returns how many were recorded.
    """
    now = utcnow()
    rows = list(session.execute(select(OnboardingToken).where(
        OnboardingToken.expires_at <= now, OnboardingToken.completed_at.is_(None),
        OnboardingToken.revoked_at.is_(None), OnboardingToken.expiry_audited_at.is_(None))
        .order_by(OnboardingToken.id).limit(limit).with_for_update(skip_locked=True)).scalars())
    if not rows:
        return 0
    append(session, [AuditRecord(
        action="onboarding.link_expired", actor_type="system", resource_type="onboarding", resource_id=str(row.id),
        method="POLL", path="poller", outcome="success",
        detail=json.dumps({"employee_id": row.employee_id, "expired_at": row.expires_at.isoformat(),
                           "used": row.claim_hash is not None}, sort_keys=True)) for row in rows])
    for row in rows:
        row.expiry_audited_at = now
    session.flush()
    return len(rows)
