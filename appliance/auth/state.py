"""The in-memory authentication state every request is checked against at the edge.

A snapshot of users (active flag, token epoch, effective permissions), API keys (hashes, expiry,
revocation, bound role) and revoked browser sessions, swapped atomically when it changes. No
request touches the database to decide whether its token, key or session is still good.

Changes made in this process refresh it right after their commit. Changes made by another process
(the CLI, another node) arrive through the ``auth_revision`` counter, which a watcher thread reads
once a second, and on PostgreSQL also through ``LISTEN vigatra_auth`` for immediate delivery.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from appliance.auth import apikeys
from appliance.rbac.actors import Actor, api_key_actor, user_actor
from appliance.rbac.permissions import parse
from appliance.store.base import utcnow
from appliance.store.models import ApiKey, AuthRevision, RevokedSession, Role, User, UserRole
from appliance.store.session import Store

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "vigatra_auth"


@dataclass(frozen=True)
class UserState:
    id: int
    username: str
    active: bool
    epoch: int
    permissions: frozenset[str]
    role_names: tuple[str, ...]
    mfa_enabled: bool
    must_change_password: bool
    # Who a request authenticated as this user acts as: built once per snapshot, not per request.
    actor: Actor = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "actor", user_actor(self.id, self.username, self.permissions))


@dataclass(frozen=True)
class KeyState:
    id: int
    name: str
    prefix: str
    secret_digest: bytes | None = field(repr=False)  # SHA-256 of the secret (apikeys.digest)
    previous_digest: bytes | None = field(repr=False)  # of the secret before a rotation
    previous_valid_until: dt.datetime | None
    expires_at: dt.datetime | None
    revoked: bool  # revoked, or its owner's epoch moved since it was issued (see _dead)
    user_id: int
    role_name: str
    permissions: frozenset[str]  # the role's permissions that the owner also holds
    actor: Actor = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "actor", api_key_actor(self.id, self.name, self.user_id, self.permissions))


@dataclass(frozen=True)
class Snapshot:
    revision: int = -1
    users: dict[int, UserState] = field(default_factory=dict)
    keys: dict[str, KeyState] = field(default_factory=dict)
    revoked_sessions: frozenset[str] = frozenset()


def bump_revision(session: Session) -> None:
    """Call in the transaction of any change that affects authentication."""
    session.execute(update(AuthRevision).where(AuthRevision.id == 1).values(revision=AuthRevision.revision + 1))
    if session.get_bind().dialect.name == "postgresql":
        # Delivered at commit, and only if the transaction commits.
        session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


def read_revision(session: Session) -> int:
    return int(session.execute(select(AuthRevision.revision).where(AuthRevision.id == 1)).scalar_one())


def load_snapshot(session: Session) -> Snapshot:
    revision = read_revision(session)
    roles = {r.id: r for r in session.execute(select(Role)).scalars()}
    role_perms = {rid: frozenset(p.permission for p in r.permissions) for rid, r in roles.items()}
    user_roles: dict[int, list[int]] = {}
    for user_id, role_id in session.execute(select(UserRole.user_id, UserRole.role_id)):
        user_roles.setdefault(user_id, []).append(role_id)
    users: dict[int, UserState] = {}
    for user in session.execute(select(User)).scalars():
        rids = user_roles.get(user.id, [])
        perms = frozenset().union(*(role_perms[r] for r in rids)) if rids else frozenset()
        users[user.id] = UserState(
            id=user.id, username=user.username, active=user.is_active, epoch=user.token_epoch,
            permissions=_valid(perms), role_names=tuple(sorted(roles[r].name for r in rids)),
            mfa_enabled=user.mfa_enabled, must_change_password=user.must_change_password)
    keys: dict[str, KeyState] = {}
    for key in session.execute(select(ApiKey)).scalars():
        role = roles.get(key.role_id)
        owner = users.get(key.user_id)
        # A key never carries more than its owner holds now: intersect once, here, not per request.
        owner_actor = owner.actor if owner else None
        granted = _valid(role_perms.get(key.role_id, frozenset()))
        effective = frozenset(p for p in granted if owner_actor is not None and owner_actor.can(p))
        keys[key.prefix] = KeyState(
            id=key.id, name=key.name, prefix=key.prefix, secret_digest=apikeys.stored_digest(key.secret_hash),
            previous_digest=apikeys.stored_digest(key.previous_secret_hash),
            previous_valid_until=key.previous_valid_until,
            expires_at=key.expires_at, revoked=_dead(key, owner), user_id=key.user_id,
            role_name=role.name if role else "", permissions=effective)
    now = utcnow()
    revoked = frozenset(session.execute(
        select(RevokedSession.session_id).where(RevokedSession.expires_at > now)).scalars())
    return Snapshot(revision, users, keys, revoked)


def _dead(key: ApiKey, owner: UserState | None) -> bool:
    """Revoked, or issued under an owner's epoch that has moved since (password change, role removed,
    disabled): the key dies with the owner's sessions and tokens until it is rotated."""
    return key.revoked_at is not None or owner is None or key.owner_epoch != owner.epoch


def _valid(perms: frozenset[str]) -> frozenset[str]:
    """Drop permissions the catalogue no longer knows (a newer database, an older process)."""
    out = set()
    for p in perms:
        try:
            parse(p)
        except ValueError:
            log.warning("ignoring unknown permission %r", p)
            continue
        out.add(p)
    return frozenset(out)


class AuthState:
    """Thread-safe holder of the current snapshot plus API-key last-use times awaiting a flush."""

    def __init__(self) -> None:
        from appliance.auth.jwt import VerifiedTokens

        self._snapshot = Snapshot()
        self._lock = threading.Lock()
        # API keys' last use: key id -> time.time(), written by the edge on every request without a lock
        # (one dict store, atomic under the GIL; a lock taken by every request convoys the threads) and
        # never swapped out, so no use is lost; what was last written to the database is kept beside it.
        self._key_last_used: dict[int, float] = {}
        self._key_last_written: dict[int, float] = {}
        self.tokens = VerifiedTokens()

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def revision(self) -> int:
        return self._snapshot.revision

    def load(self, store: Store) -> None:
        with store.read() as session:
            snapshot = load_snapshot(session)
        with self._lock:
            if snapshot.revision >= self._snapshot.revision:
                self._snapshot = snapshot

    def refresh_if_changed(self, store: Store) -> bool:
        with store.read() as session:
            current = read_revision(session)
        if current != self._snapshot.revision:
            self.load(store)
            return True
        return False

    def user(self, user_id: int) -> UserState | None:
        return self._snapshot.users.get(user_id)

    def user_by_name(self, username: str) -> UserState | None:
        for user in self._snapshot.users.values():
            if user.username == username:
                return user
        return None

    def key(self, prefix: str) -> KeyState | None:
        return self._snapshot.keys.get(prefix)

    def session_revoked(self, session_id: str) -> bool:
        return session_id in self._snapshot.revoked_sessions

    def note_key_used(self, key_id: int) -> None:
        self._key_last_used[key_id] = time.time()  # a float per request; datetimes when written

    def unwritten_key_usage(self) -> dict[int, float]:
        """Keys used since their last use was written, with the time of that latest use."""
        seen = self._key_last_used.copy()  # atomic under the GIL, while the edge goes on writing
        written = self._key_last_written
        return {key_id: at for key_id, at in seen.items() if written.get(key_id) != at}

    def key_usage_written(self, usage: dict[int, float]) -> None:
        """``usage`` (from :meth:`unwritten_key_usage`) is committed; a failed write leaves it pending."""
        self._key_last_written.update(usage)


def usage_times(usage: dict[int, float]) -> dict[int, dt.datetime]:
    return {key_id: dt.datetime.fromtimestamp(at, dt.UTC) for key_id, at in usage.items()}


class RevocationWatcher:
    """Keeps an AuthState current with changes made by other processes."""

    def __init__(self, store: Store, state: AuthState, interval: float = 1.0) -> None:
        self.store = store
        self.state = state
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        target = self._listen_postgres if self.store.dialect == "postgresql" else self._poll
        self._thread = threading.Thread(target=target, name="revocation-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _tick(self) -> None:
        try:
            self.state.refresh_if_changed(self.store)
        except Exception as exc:  # noqa: BLE001 - the database may be restarting; keep the last snapshot
            log.warning("revocation refresh failed: %s", type(exc).__name__)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._tick()

    def _listen_postgres(self) -> None:
        import psycopg

        url = self.store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._tick()
                    while not self._stop.is_set():
                        # Wakes on NOTIFY at once; the timeout doubles as the polling fallback.
                        for _ in conn.notifies(timeout=self.interval, stop_after=1):
                            pass
                        self._tick()
            except Exception as exc:  # noqa: BLE001 - reconnect whatever broke the LISTEN connection
                log.warning("revocation listener reconnecting: %s", type(exc).__name__)
                if self._stop.wait(self.interval):
                    return
