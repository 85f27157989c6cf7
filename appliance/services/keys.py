"""Data keys (DEKs) in the store, wrapped by the customer-held KEK; sealing, rotation, verification.

- Each DEK version is a row of ``key_versions`` holding only the DEK *wrapped* by the key provider.
  One version is ``active`` (new seals); ``retiring`` versions still open old values during a
  rotation; ``retired`` versions are wiped once nothing is sealed under them.
- Every sealed column is listed in :data:`SEALED_COLUMNS`; rotation and verification walk them.
- Rotation creates a new active DEK, re-seals in batches (one transaction per batch: a crash at
  any instant leaves every value sealed under a DEK that still exists, and running it again
  resumes), then retires the old versions. A serving process picks up a new active version the
  next time it seals, and loads a DEK it has not seen when it meets a value sealed under it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from appliance.crypto import KeyProvider, Sealer, generate_dek
from appliance.errors import IntegrityFailure, KeyProviderError
from appliance.store.base import utcnow
from appliance.store.models import Connection, KeyVersion, User
from appliance.store.session import Store

log = logging.getLogger(__name__)

# (model, primary key attribute, sealed column) for every column that holds a sealed value.
SEALED_COLUMNS: tuple[tuple[Any, str, str], ...] = (
    (Connection, "id", "api_key_sealed"),
    (Connection, "id", "api_secret_sealed"),
    (Connection, "id", "passphrase_sealed"),
    (User, "id", "totp_secret_sealed"),
)


def wrap_context(version: int) -> bytes:
    return f"vigatra/dek/v{version}".encode()


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


class KeyService:
    """The process's view of the DEKs: unwrapped in memory only, loaded through the provider."""

    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider
        self._sealer: Sealer | None = None
        self._lock = threading.Lock()
        self._derived: dict[str, bytes] = {}

    # -- loading ------------------------------------------------------------------------------
    def load(self, session: Session) -> None:
        rows = session.execute(
            select(KeyVersion).where(KeyVersion.status != "retired").order_by(KeyVersion.version)).scalars().all()
        if not rows:
            raise KeyProviderError("no data key in the database: run `vigatra keys init`")
        keys = {row.version: self.provider.unwrap(row.wrapped_key, context=wrap_context(row.version)) for row in rows}
        active = [row.version for row in rows if row.status == "active"]
        if len(active) != 1:
            raise KeyProviderError(f"expected exactly one active data key, found {len(active)}")
        with self._lock:
            self._sealer = Sealer(keys, active[0])

    @property
    def loaded(self) -> bool:
        return self._sealer is not None

    @property
    def sealer(self) -> Sealer:
        if self._sealer is None:
            raise KeyProviderError("data keys are not loaded")
        return self._sealer

    def derive(self, label: str) -> bytes:
        """A 32-byte key for ``label`` (JWT, sessions, audit signing), from the KEK."""
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
    def seal(self, session: Session, plaintext: str | bytes, *, table: str, column: str, row_id: Any) -> bytes:
        active = session.execute(select(KeyVersion.version).where(KeyVersion.status == "active")).scalar_one()
        if self._sealer is None or self._sealer.active_version != active:
            self.load(session)
        return self.sealer.seal(plaintext, table=table, column=column, row_id=row_id)

    def open(self, session: Session | None, blob: bytes, *, table: str, column: str, row_id: Any) -> bytes:
        sealer = self.sealer
        version = sealer.key_version_of(blob)
        if not sealer.has_version(version) and session is not None:
            # Sealed by another process under a DEK created after we loaded ours (rotation).
            self.load(session)
            sealer = self.sealer
        return sealer.open(blob, table=table, column=column, row_id=row_id)

    def open_text(self, session: Session | None, blob: bytes, *, table: str, column: str, row_id: Any) -> str:
        return self.open(session, blob, table=table, column=column, row_id=row_id).decode("utf-8")

    # -- status, verification, rotation --------------------------------------------------------
    def status(self, session: Session) -> list[VersionStatus]:
        counts: dict[int, int] = {}
        for _table, _col, _row, blob in iter_sealed(session):
            counts[Sealer.key_version_of(blob)] = counts.get(Sealer.key_version_of(blob), 0) + 1
        rows = session.execute(select(KeyVersion).order_by(KeyVersion.version)).scalars()
        return [VersionStatus(r.version, r.status, r.kek_id, r.created_at.isoformat(timespec="seconds"),
                              counts.get(r.version, 0)) for r in rows]

    def verify(self, session: Session) -> tuple[int, list[SealFailure]]:
        """Open every sealed value; return (how many opened, failures by table/row)."""
        ok = 0
        failures: list[SealFailure] = []
        for table, column, row_id, blob in iter_sealed(session):
            try:
                self.open(session, blob, table=table, column=column, row_id=row_id)
                ok += 1
            except (IntegrityFailure, KeyProviderError) as exc:
                failures.append(SealFailure(table, column, row_id, exc.message))
        return ok, failures

    def rotate(self, store: Store, *, batch_size: int = 500,
               progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """Re-seal everything under a new DEK (or finish an interrupted rotation).

        Returns (new active version, values re-sealed). Each batch commits on its own.
        """
        with store.unit_of_work() as session:
            versions = session.execute(select(KeyVersion).order_by(KeyVersion.version)).scalars().all()
            retiring = [v for v in versions if v.status == "retiring"]
            if not retiring:
                current = max(v.version for v in versions)
                session.execute(update(KeyVersion).where(KeyVersion.status == "active").values(status="retiring"))
                self._add_version(session, current + 1, "active")
            self.load(session)
        target = self.sealer.active_version
        resealed = 0
        for model, pk, column in SEALED_COLUMNS:
            last: Any = None
            while True:
                with store.unit_of_work() as session:
                    stmt = select(getattr(model, pk), getattr(model, column)).where(
                        getattr(model, column).is_not(None)).order_by(getattr(model, pk)).limit(batch_size)
                    if last is not None:
                        stmt = stmt.where(getattr(model, pk) > last)
                    rows = session.execute(stmt).all()
                    if not rows:
                        break
                    table = model.__tablename__
                    for row_id, blob in rows:
                        last = row_id
                        if Sealer.key_version_of(blob) == target:
                            continue
                        plain = self.open(session, blob, table=table, column=column, row_id=row_id)
                        fresh = self.sealer.seal(plain, table=table, column=column, row_id=row_id)
                        del plain
                        session.execute(update(model).where(getattr(model, pk) == row_id).values({column: fresh}))
                        resealed += 1
                if progress is not None:
                    progress(resealed)
        with store.unit_of_work() as session:
            remaining = [Sealer.key_version_of(blob) for *_rest, blob in iter_sealed(session)]
            if any(v != target for v in remaining):
                raise IntegrityFailure("rotation incomplete: some values are still sealed under an old key; "
                                       "run `vigatra keys rotate` again")
            session.execute(update(KeyVersion).where(KeyVersion.status == "retiring").values(
                status="retired", retired_at=utcnow(), wrapped_key=b""))
            self.load(session)
        return target, resealed

    def rewrap(self, session: Session, new_provider: KeyProvider) -> int:
        """Wrap every live DEK under ``new_provider``'s KEK (e.g. file -> HSM); returns how many."""
        rows = session.execute(select(KeyVersion).where(KeyVersion.status != "retired")).scalars().all()
        for row in rows:
            dek = self.provider.unwrap(row.wrapped_key, context=wrap_context(row.version))
            row.wrapped_key = new_provider.wrap(dek, context=wrap_context(row.version))
            row.kek_id = new_provider.kek_id()
            del dek
        session.flush()
        return len(rows)


def iter_sealed(session: Session) -> Iterator[tuple[str, str, Any, bytes]]:
    """(table, column, row id, blob) for every non-empty sealed value."""
    for model, pk, column in SEALED_COLUMNS:
        stmt = select(getattr(model, pk), getattr(model, column)).where(getattr(model, column).is_not(None))
        for row_id, blob in session.execute(stmt):
            yield model.__tablename__, column, row_id, blob
