"""Data keys (DEKs) in the store, wrapped by the customer-held KEK; sealing, rotation, verification.

- Each DEK version is a row of ``key_versions`` holding only the DEK *wrapped* by the key provider.
  One version is ``active`` (new seals); ``retiring`` versions still open old values during a
  rotation; ``retired`` versions are wiped once nothing is sealed under them.
- Every sealed column is listed in :data:`SEALED_COLUMNS`; rotation and verification walk them.
- Rotation creates a new active DEK, re-seals in batches (one transaction per batch: a crash at
  any instant leaves every value sealed under a DEK that still exists, and running it again
  resumes), then retires the old versions. A serving process picks up a new active version the
  next time it seals, and loads a DEK it has not seen when it meets a value sealed under it.

Why rotation is safe next to a serving process (SECURITY.md "Secrets at rest", issue 3):

- Re-sealing writes with a compare-and-swap (``WHERE id = ? AND col = <the blob it opened>``), so a
  credential replaced by onboarding while a batch runs is never overwritten with the old secret.
- ``seal()`` reads the active version ``FOR SHARE`` on PostgreSQL (SQLite writers already hold the
  database lock), so the switch to a new version waits for in-flight seals under the old one;
  retirement re-counts stale values in its own transaction and rotation loops until none is left.
- A process keeps the unwrapped DEK of every live version it has seen, by version (a version's DEK
  never changes; a rewrap only changes its wrapping), so a reload costs no HSM round trip and a
  rewrap by another process does not disturb it. Retired versions are dropped at the next load.

Tamper response (issue 3 item 6): :func:`open_connection_credentials` never treats a value that
fails authentication as empty and never retries it with another key; it turns the connection
``broken``, raises a critical ``integrity_failure`` alert and appends an audit event, then raises.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import LargeBinary, and_, bindparam, func, literal_column, or_, select, update
from sqlalchemy.orm import Session

from appliance.crypto import KeyProvider, Sealer, generate_dek
from appliance.crypto.sealing import FORMAT_VERSION, MAGIC
from appliance.errors import Conflict, IntegrityFailure, KeyProviderError, NotFound
from appliance.store.base import utcnow
from appliance.store.models import Alert, Connection, KeyVersion, MailOutbox, User
from appliance.store.session import Store
from appliance.venues.base import Credentials

log = logging.getLogger(__name__)

# (model, primary key attribute, sealed column) for every column that holds a sealed value.
SEALED_COLUMNS: tuple[tuple[Any, str, str], ...] = (
    (Connection, "id", "api_key_sealed"),
    (Connection, "id", "api_secret_sealed"),
    (Connection, "id", "passphrase_sealed"),
    (User, "id", "totp_secret_sealed"),
    (MailOutbox, "id", "body_sealed"),
)
CREDENTIAL_COLUMNS = (("api_key", "api_key_sealed"), ("api_secret", "api_secret_sealed"),
                      ("passphrase", "passphrase_sealed"))

# The first 8 bytes of a sealed blob: magic, format version, key version (appliance/crypto/sealing.py).
# Rotation and status compare them in SQL so that neither has to fetch every blob to find stale ones.
_BLOB_HEADER = struct.Struct(">3sBI")
# How often rotation re-scans for values sealed under an old version by a writer that raced it.
_MAX_ROTATION_PASSES = 5


def wrap_context(version: int) -> bytes:
    return f"vigatra/dek/v{version}".encode()


def blob_header(version: int) -> bytes:
    return _BLOB_HEADER.pack(MAGIC, FORMAT_VERSION, version)


def header_version(header: bytes | None) -> int | None:
    """The key version in a blob's first 8 bytes, or None if they are not a sealed-blob header."""
    if header is None or len(header) != _BLOB_HEADER.size:
        return None
    magic, fmt, version = _BLOB_HEADER.unpack(bytes(header))
    return int(version) if magic == MAGIC and fmt == FORMAT_VERSION else None


def _head(column: Any) -> Any:
    # Literal positions, not bind parameters: PostgreSQL matches a GROUP BY expression to the
    # selected one only if they are textually the same, and two binds ($1, $3) are not.
    return func.substr(column, literal_column("1"), literal_column(str(_BLOB_HEADER.size)), type_=LargeBinary)


@dataclass(frozen=True)
class VersionStatus:
    version: int
    status: str
    kek_id: str
    created_at: str
    secrets: int


@dataclass(frozen=True)
class SealFailure:
    table: str
    column: str
    row_id: Any
    reason: str
    # True for a value that failed authentication or is malformed (tamper response applies); False
    # when the key needed to open it could not be obtained (a provider problem, not tampering).
    integrity: bool = True


class KeyService:
    """The process's view of the DEKs: unwrapped in memory only, loaded through the provider."""

    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider
        self._sealer: Sealer | None = None
        self._lock = threading.Lock()
        self._derived: dict[str, bytes] = {}
        self._deks: dict[int, bytes] = {}
        self._live: tuple[tuple[int, str], ...] = ()

    def __repr__(self) -> str:
        return f"<KeyService {self.provider.name} {self._sealer!r}>"

    # -- loading ------------------------------------------------------------------------------
    def load(self, session: Session) -> None:
        """(Re)build the sealer from the live versions in the store. Fails before changing anything."""
        rows = session.execute(
            select(KeyVersion.version, KeyVersion.status, KeyVersion.wrapped_key)
            .where(KeyVersion.status != "retired").order_by(KeyVersion.version)).all()
        if not rows:
            raise KeyProviderError("no data key in the database: run `vigatra keys init`")
        active = [version for version, status, _wrapped in rows if status == "active"]
        if len(active) != 1:
            raise KeyProviderError(f"expected exactly one active data key, found {len(active)}")
        with self._lock:
            known = dict(self._deks)
        keys = {version: known.get(version) or self.provider.unwrap(wrapped, context=wrap_context(version))
                for version, _status, wrapped in rows}
        sealer = Sealer(keys, active[0])
        with self._lock:
            self._deks = keys
            self._sealer = sealer
            self._live = tuple((version, status) for version, status, _wrapped in rows)

    def refresh(self, session: Session) -> None:
        """Reload if the live versions changed (another process rotated): one small query."""
        rows = session.execute(select(KeyVersion.version, KeyVersion.status)
                               .where(KeyVersion.status != "retired").order_by(KeyVersion.version)).all()
        if self._sealer is None or tuple((v, s) for v, s in rows) != self._live:
            self.load(session)

    @property
    def sealer(self) -> Sealer:
        if self._sealer is None:
            raise KeyProviderError("data keys are not loaded")
        return self._sealer

    def derive(self, label: str) -> bytes:
        """A 32-byte key for ``label`` (JWT, sessions, audit signing), from the KEK."""
        derived = self._derived.get(label)  # every request asks for the JWT key: no lock once derived
        if derived is not None:
            return derived
        with self._lock:
            if label not in self._derived:
                self._derived[label] = self.provider.derive(label)
            return self._derived[label]

    # -- first key ------------------------------------------------------------------------------
    def create_first(self, session: Session) -> int:
        if session.execute(select(func.count()).select_from(KeyVersion)).scalar_one():
            raise KeyProviderError("data keys already exist (use `vigatra keys rotate`)")
        self._add_version(session, 1, "active")
        self.load(session)
        return 1

    def _add_version(self, session: Session, version: int, status: str) -> None:
        dek = generate_dek()
        session.add(KeyVersion(version=version, wrapped_key=self.provider.wrap(dek, context=wrap_context(version)),
                               kek_id=self.provider.kek_id(), status=status))
        session.flush()

    # -- sealing --------------------------------------------------------------------------------
    def _active_version(self, session: Session) -> int:
        # FOR SHARE (PostgreSQL only; SQLite writers hold the database lock already) makes a rotation
        # that is switching versions wait for this transaction, so nothing commits under a version
        # that rotation has already scanned past.
        stmt = select(KeyVersion.version).where(KeyVersion.status == "active").with_for_update(read=True)
        for _attempt in range(2):
            # A statement that waited on the switch skips the old row and cannot see the new one:
            # the second statement gets a fresh snapshot under read committed.
            version = session.execute(stmt).scalar_one_or_none()
            if version is not None:
                return int(version)
        raise KeyProviderError("no active data key in the database: run `vigatra keys init`")

    def seal(self, session: Session, plaintext: str | bytes, *, table: str, column: str, row_id: Any) -> bytes:
        active = self._active_version(session)
        if self._sealer is None or self._sealer.active_version != active:
            self.load(session)
        return self.sealer.seal(plaintext, table=table, column=column, row_id=row_id)

    def _sealer_for(self, session: Session | None, blob: bytes) -> Sealer:
        sealer = self.sealer
        try:
            version = Sealer.key_version_of(blob)
        except IntegrityFailure:
            return sealer  # malformed: the sealer's open() names the row
        if not sealer.has_version(version) and session is not None:
            # Sealed by another process under a DEK created after we loaded ours (rotation).
            self.load(session)
            sealer = self.sealer
        return sealer

    def open(self, session: Session | None, blob: bytes, *, table: str, column: str, row_id: Any) -> bytes:
        return self._sealer_for(session, blob).open(blob, table=table, column=column, row_id=row_id)

    def open_text(self, session: Session | None, blob: bytes, *, table: str, column: str, row_id: Any) -> str:
        return self._sealer_for(session, blob).open_text(blob, table=table, column=column, row_id=row_id)

    # -- status, verification -----------------------------------------------------------------
    def sealed_counts(self, session: Session) -> dict[int | None, int]:
        """How many sealed values each key version holds (None: not a sealed blob), counted in SQL."""
        counts: dict[int | None, int] = {}
        for model, _pk, column in SEALED_COLUMNS:
            col = getattr(model, column)
            for head, n in session.execute(select(_head(col), func.count()).where(col.is_not(None))
                                           .group_by(_head(col))):
                version = header_version(head)
                counts[version] = counts.get(version, 0) + int(n)
        return counts

    def status(self, session: Session) -> list[VersionStatus]:
        counts = self.sealed_counts(session)
        rows = session.execute(select(KeyVersion).order_by(KeyVersion.version)).scalars()
        return [VersionStatus(r.version, r.status, r.kek_id, r.created_at.isoformat(timespec="seconds"),
                              counts.get(r.version, 0)) for r in rows]

    def verify(self, session: Session) -> tuple[int, list[SealFailure]]:
        """Open every sealed value; return (how many opened, failures by table/row)."""
        self.load(session)
        ok = 0
        failures: list[SealFailure] = []
        for table, column, row_id, blob in iter_sealed(session):
            try:
                self.open(session, blob, table=table, column=column, row_id=row_id)
                ok += 1
            except IntegrityFailure as exc:
                failures.append(SealFailure(table, column, row_id, exc.message))
            except KeyProviderError as exc:
                failures.append(SealFailure(table, column, row_id, exc.message, integrity=False))
        return ok, failures

    # -- rotation -------------------------------------------------------------------------------
    def begin_rotation(self, session: Session) -> tuple[int, bool]:
        """Create the new active DEK, or find the rotation a crash interrupted.

        Returns (target version, resumed). Loads the current DEKs first, so a wrong KEK fails here
        with "KEK unavailable" before anything is written.
        """
        self.load(session)
        versions = session.execute(select(KeyVersion).order_by(KeyVersion.version).with_for_update()).scalars().all()
        if any(v.status == "retiring" for v in versions):
            return self.sealer.active_version, True
        target = max(v.version for v in versions) + 1
        session.execute(update(KeyVersion).where(KeyVersion.status == "active").values(status="retiring"))
        self._add_version(session, target, "active")
        self.load(session)
        return target, False

    def pending_count(self, session: Session) -> int:
        """Sealed values not (yet) under the active version."""
        header = blob_header(self._active_version(session))
        total = 0
        for model, _pk, column in SEALED_COLUMNS:
            col = getattr(model, column)
            total += int(session.execute(select(func.count()).where(col.is_not(None), _head(col) != header))
                         .scalar_one())
        return total

    def reseal_pending(self, store: Store, *, batch_size: int = 500,
                       progress: Callable[[int], None] | None = None) -> int:
        """Re-seal every value not under the active version, ``batch_size`` rows per transaction."""
        with store.read() as session:
            self.load(session)
        sealer = self.sealer  # one consistent view for the whole pass, whatever other threads load
        target = sealer.active_version
        header = blob_header(target)
        resealed = 0
        for model, pk, columns in _sealed_tables():
            table = model.__table__
            pk_col = table.c[pk]
            cols = [table.c[name] for name in columns]
            stale = or_(*[and_(c.is_not(None), _head(c) != header) for c in cols])
            # Re-sealing is not an edit: keep updated_at (and any other onupdate column) as it was.
            keep = {c.name: c for c in table.c if c.onupdate is not None}
            swaps = {name: update(table).where(pk_col == bindparam("b_id"), table.c[name] == bindparam("b_old"))
                     .values({name: bindparam("b_new"), **keep}) for name in columns}
            last: Any = None
            while True:
                with store.unit_of_work() as session:
                    stmt = select(pk_col, *cols).where(stale).order_by(pk_col).limit(batch_size)
                    if last is not None:
                        stmt = stmt.where(pk_col > last)
                    rows = session.execute(stmt).all()
                    if not rows:
                        break
                    params: dict[str, list[dict[str, Any]]] = {name: [] for name in columns}
                    for row in rows:
                        row_id = last = row[0]
                        for name, blob in zip(columns, row[1:], strict=True):
                            if blob is None or bytes(blob[:len(header)]) == header:
                                continue
                            where = {"table": model.__tablename__, "column": name, "row_id": row_id}
                            plain = self.open(session, blob, **where)
                            params[name].append({"b_id": row_id, "b_old": blob, "b_new": sealer.seal(plain, **where)})
                            del plain
                    for name, batch in params.items():
                        if batch:
                            session.execute(swaps[name], batch)
                            resealed += len(batch)
                if progress is not None:
                    progress(resealed)
        return resealed

    def finish_rotation(self, session: Session) -> list[int]:
        """Retire (and wipe) every retiring version; refuses while a value is still sealed under one."""
        pending = self.pending_count(session)
        if pending:
            raise Conflict(f"rotation incomplete: {pending} value(s) are still sealed under an old data key; "
                           "run `vigatra keys rotate` again")
        retiring = list(session.execute(select(KeyVersion.version).where(KeyVersion.status == "retiring")
                                        .order_by(KeyVersion.version)).scalars())
        if retiring:
            session.execute(update(KeyVersion).where(KeyVersion.status == "retiring").values(
                status="retired", retired_at=utcnow(), wrapped_key=b""))
        self.load(session)
        return retiring

    def rotate(self, store: Store, *, batch_size: int = 500,
               progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """Re-seal everything under a new DEK (or finish an interrupted rotation).

        Returns (new active version, values re-sealed). Each batch commits on its own.
        """
        with store.unit_of_work() as session:
            target, _resumed = self.begin_rotation(session)
        resealed = 0

        def report(done_in_pass: int) -> None:
            if progress is not None:
                progress(resealed + done_in_pass)

        for _attempt in range(_MAX_ROTATION_PASSES):
            resealed += self.reseal_pending(store, batch_size=batch_size, progress=report)
            with store.unit_of_work() as session:
                if self.pending_count(session) == 0:
                    self.finish_rotation(session)
                    return target, resealed
        raise Conflict("rotation incomplete: values keep appearing under an old data key; "
                       "run `vigatra keys rotate` again")

    # -- rewrap ---------------------------------------------------------------------------------
    def rewrap(self, session: Session, new_provider: KeyProvider) -> int:
        """Wrap every live DEK under ``new_provider``'s KEK (e.g. file -> HSM); returns how many.

        Each new wrapping is opened again with the new provider before anything is flushed, so a
        provider that wraps but cannot unwrap never strands the data keys.
        """
        rows = session.execute(select(KeyVersion).where(KeyVersion.status != "retired")
                               .order_by(KeyVersion.version).with_for_update()).scalars().all()
        new_kek_id = new_provider.kek_id()
        rewrapped: list[tuple[KeyVersion, bytes]] = []
        for row in rows:
            context = wrap_context(row.version)
            dek = self.provider.unwrap(row.wrapped_key, context=context)
            wrapped = new_provider.wrap(dek, context=context)
            if new_provider.unwrap(wrapped, context=context) != dek:
                raise KeyProviderError(f"{new_provider.name} provider: a rewrapped data key did not open again; "
                                       "nothing was changed")
            del dek
            rewrapped.append((row, wrapped))
        for row, wrapped in rewrapped:
            row.wrapped_key = wrapped
            row.kek_id = new_kek_id
        session.flush()
        return len(rows)


def _sealed_tables() -> list[tuple[Any, str, list[str]]]:
    """SEALED_COLUMNS grouped by table, in order."""
    grouped: dict[Any, tuple[str, list[str]]] = {}
    for model, pk, column in SEALED_COLUMNS:
        grouped.setdefault(model, (pk, []))[1].append(column)
    return [(model, pk, columns) for model, (pk, columns) in grouped.items()]


def iter_sealed(session: Session) -> Iterator[tuple[str, str, Any, bytes]]:
    """(table, column, row id, blob) for every non-empty sealed value."""
    for model, pk, column in SEALED_COLUMNS:
        stmt = select(getattr(model, pk), getattr(model, column)).where(
            getattr(model, column).is_not(None)).order_by(getattr(model, pk))
        for row_id, blob in session.execute(stmt):
            yield model.__tablename__, column, row_id, blob


# -- connection credentials -----------------------------------------------------------------------


def seal_credentials(session: Session, keys: KeyService, connection: Connection, api_key: str | None,
                     api_secret: str | None, passphrase: str | None = None) -> Connection:
    """Seal a connection's credentials into its columns, each bound to connections/<column>/<row id>.

    Flushes first so the row has its id (the id is part of the associated data). Empty values are
    stored as NULL. Flushes, never commits.
    """
    if connection.id is None:
        session.add(connection)
        session.flush()
    table = Connection.__tablename__
    for (_field, column), value in zip(CREDENTIAL_COLUMNS, (api_key, api_secret, passphrase), strict=True):
        setattr(connection, column, keys.seal(session, value, table=table, column=column, row_id=connection.id)
                if value else None)
    session.flush()
    return connection


def _open_columns(session: Session, keys: KeyService, connection: Connection
                  ) -> tuple[dict[str, str], tuple[str, IntegrityFailure] | None]:
    values: dict[str, str] = {}
    for field, column in CREDENTIAL_COLUMNS:
        blob = getattr(connection, column)
        if blob is None:
            values[field] = ""
            continue
        try:
            values[field] = keys.open_text(session, blob, table=Connection.__tablename__, column=column,
                                           row_id=connection.id)
        except IntegrityFailure as exc:
            return values, (column, exc)
    return values, None


def open_connection_credentials(session: Session, keys: KeyService, connection_id: int) -> Credentials:
    """The plaintext credentials of one connection, for the duration of a venue call.

    On a value that fails authentication (tampered, copied from another row or column, replayed
    from a retired key version, truncated...) this turns the connection ``broken``, raises a
    critical ``integrity_failure`` alert and appends a ``keys.integrity_failure`` audit event, all in
    ``session`` (flushed), and then raises the :class:`IntegrityFailure`. The caller's unit of work
    must still commit that session (catch the error inside it), or use
    :func:`load_connection_credentials`, which does so itself.
    """
    keys.refresh(session)
    connection = session.get(Connection, connection_id)
    if connection is None:
        raise NotFound("not found")
    blobs = [getattr(connection, column) for _field, column in CREDENTIAL_COLUMNS]
    values, failed = _open_columns(session, keys, connection)
    if failed is not None:
        # Under PostgreSQL's read committed a rotation may have re-sealed this row and retired the
        # key of the value we read in between. Read the row once more: a *changed* value is the
        # current one, not a retry of the failing value with another key.
        session.refresh(connection)
        if [getattr(connection, column) for _field, column in CREDENTIAL_COLUMNS] != blobs:
            keys.refresh(session)
            values, failed = _open_columns(session, keys, connection)
    if failed is not None:
        column, exc = failed
        record_integrity_failure(session, Connection.__tablename__, column, connection.id, exc.message)
        raise exc
    return Credentials(values["api_key"], values["api_secret"], values["passphrase"])


def load_connection_credentials(store: Store, keys: KeyService, connection_id: int) -> Credentials:
    """:func:`open_connection_credentials` in a unit of work of its own that commits the tamper
    response before raising (for poller jobs, which take ids and own their transactions)."""
    failure: IntegrityFailure | None = None
    with store.unit_of_work() as session:
        try:
            return open_connection_credentials(session, keys, connection_id)
        except IntegrityFailure as exc:
            failure = exc  # leave the block normally so the tamper response commits
    raise failure


def record_integrity_failure(session: Session, table: str, column: str, row_id: Any, reason: str) -> None:
    """The tamper response: connection broken (if it is one), critical alert, audit event. Flushes.

    ``reason`` is an IntegrityFailure message: it names table, column and row, never contents.
    """
    from appliance.audit.writer import AuditRecord, append
    from appliance.services.alerts import raise_alert

    where = f"{table}.{column} row {row_id}"
    detail = {"table": table, "column": column, "row": str(row_id), "reason": reason}
    connection_id: int | None = None
    employee_id: int | None = None
    if table == Connection.__tablename__:
        connection = session.get(Connection, row_id)
        if connection is not None:
            connection_id, employee_id = connection.id, connection.employee_id
            connection.status = "broken"
            connection.status_reason = (f"stored credentials failed authentication ({where}): tampered or "
                                        "copied; re-onboard this connection")[:500]
    duplicate = connection_id is None and any(
        (a.detail or {}).get("table") == table and (a.detail or {}).get("row") == str(row_id)
        for a in session.execute(select(Alert).where(Alert.kind == "integrity_failure", Alert.connection_id.is_(None),
                                                     Alert.status.in_(("open", "investigating")))).scalars())
    if not duplicate:
        raise_alert(session, kind="integrity_failure", severity="critical", connection_id=connection_id,
                    employee_id=employee_id, title=f"Sealed secret failed authentication: {where}", detail=detail,
                    dedupe=connection_id is not None)
    append(session, [AuditRecord(action="keys.integrity_failure", actor_type="system", resource_type=table,
                                 resource_id=str(row_id), outcome="failure",
                                 detail=json.dumps(detail, sort_keys=True))])
    log.error("integrity failure: %s", where)
    session.flush()
