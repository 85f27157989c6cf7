"""Signed checkpoints: statements "the chain had N events ending in hash H at time T", signed with Ed25519.

Why: the hash chain alone shows an edited or deleted row, but not a cut-off tail — whoever can
delete the newest rows can also rewind ``audit_chain_head``. A checkpoint names the newest event's
id and hash under a signature whose key lives with the KEK (``KeyProvider.derive("audit-signing")``),
never in the database, so a truncated tail or a rewritten chain contradicts a signature the
database owner cannot forge. They are written periodically — empty periods included, so silence
is itself attested — and at every export and purge (SECURITY.md "Audit"; CloudTrail digest files).

Each checkpoint's ``detail`` (JSON) also names the digest of the checkpoint before it
(``prev_checkpoint``), so removing a checkpoint from the middle breaks that second chain too.

Signed message (``MESSAGE_PREFIX`` + the chain's length-prefixed canonical encoding)::

    appliance_id, kind, created_at (ISO ms UTC), last_event_id, last_hash, event_count, detail, key_id

A ``rekey`` checkpoint is signed by the new key and carries the old public key, so verification
that trusts the current key learns the older keys — each only for the checkpoints before it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.audit.chain import canonical, truncate_ms
from appliance.crypto import public_key_id, public_key_pem, sign, signing_key_from_seed, verify
from appliance.store.base import utcnow
from appliance.store.models import AuditChainHead, AuditCheckpoint

log = logging.getLogger(__name__)

SIGNING_LABEL = "audit-signing"
MESSAGE_PREFIX = b"vigatra-audit-checkpoint/v1\n"
KINDS = ("periodic", "export", "purge", "rekey", "backup", "restore")
HEAD_ID = 1


@dataclass(frozen=True)
class Signer:
    """The audit signing key in memory, with its public half and id (never persisted)."""

    key: Ed25519PrivateKey
    key_id: str
    public_pem: str

    @classmethod
    def from_seed(cls, seed: bytes) -> Signer:
        key = signing_key_from_seed(seed)
        return cls(key=key, key_id=public_key_id(key), public_pem=public_key_pem(key))

    def sign(self, message: bytes) -> bytes:
        return sign(self.key, message)


class _Keys(Protocol):
    def derive(self, label: str) -> bytes: ...


class _Appliance(Protocol):
    """What the checkpoint job needs of services.context.Appliance (audit may not import services)."""

    @property
    def settings(self) -> Any: ...

    @property
    def store(self) -> Any: ...

    @property
    def keys(self) -> _Keys: ...


def signer_for(appliance: _Appliance) -> Signer:
    """The appliance's audit signer: seed derived from the KEK under the label "audit-signing"."""
    return signer_from(appliance.keys)


def signer_from(keys: _Keys) -> Signer:
    """The audit signer of a key provider (or key service): what signer_for uses, for a KEK being moved to."""
    return Signer.from_seed(keys.derive(SIGNING_LABEL))


@dataclass(frozen=True)
class CheckpointFields:
    """Everything a checkpoint's signature covers."""

    appliance_id: str
    kind: str
    created_at: dt.datetime
    last_event_id: int
    last_hash: str
    event_count: int
    detail: str
    key_id: str

    @classmethod
    def of(cls, row: AuditCheckpoint | Any, appliance_id: str) -> CheckpointFields:
        return cls(appliance_id, row.kind, row.created_at, int(row.last_event_id), row.last_hash,
                   int(row.event_count), row.detail, row.key_id)

    def message(self) -> bytes:
        return MESSAGE_PREFIX + canonical([self.appliance_id, self.kind, self.created_at, self.last_event_id,
                                           self.last_hash, self.event_count, self.detail, self.key_id])


def checkpoint_digest(fields: CheckpointFields, signature: bytes) -> str:
    """What the next checkpoint names as ``prev_checkpoint``: SHA-256 of message and signature."""
    return hashlib.sha256(fields.message() + bytes(signature)).hexdigest()


def detail_of(row: AuditCheckpoint | Any) -> dict[str, Any]:
    """The checkpoint's detail as a dict; ValueError if it is not a JSON object."""
    try:
        value = json.loads(row.detail or "{}")
    except json.JSONDecodeError:
        raise ValueError("detail is not JSON") from None
    if not isinstance(value, dict):
        raise ValueError("detail is not a JSON object")
    return value


def verify_signature(row: AuditCheckpoint | Any, appliance_id: str, public_pem: str) -> bool:
    """True if ``row``'s signature verifies under ``public_pem`` for ``appliance_id``."""
    return verify(public_pem, CheckpointFields.of(row, appliance_id).message(), bytes(row.signature))


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)).scalar_one_or_none()


def write_checkpoint(session: Session, signer: Signer, kind: str, appliance_id: str,
                     detail: Mapping[str, Any] | None = None, *, now: dt.datetime | None = None) -> AuditCheckpoint:
    """Sign the current chain head and add the checkpoint to ``session`` (flushes, never commits).

    Takes the chain-head lock first, like every audit writer, so the checkpoint names a head no
    concurrent writer is moving and checkpoints are strictly ordered.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    head = session.execute(
        select(AuditChainHead).where(AuditChainHead.id == HEAD_ID).with_for_update()).scalar_one()
    previous = latest_checkpoint(session)
    info = dict(detail or {})
    info["prev_checkpoint"] = (checkpoint_digest(CheckpointFields.of(previous, appliance_id), previous.signature)
                               if previous is not None else None)
    fields = CheckpointFields(
        appliance_id=appliance_id, kind=kind, created_at=truncate_ms(now or utcnow()),
        last_event_id=int(head.last_id), last_hash=head.last_hash,
        event_count=int(head.last_id) - int(head.purged_through_id),
        detail=json.dumps(info, sort_keys=True, separators=(",", ":")), key_id=signer.key_id)
    row = AuditCheckpoint(created_at=fields.created_at, kind=kind, last_event_id=fields.last_event_id,
                          last_hash=fields.last_hash, event_count=fields.event_count, detail=fields.detail,
                          key_id=fields.key_id, signature=signer.sign(fields.message()))
    session.add(row)
    session.flush()
    return row


def write_rekey_checkpoint(session: Session, new_signer: Signer, old_public_pem: str, appliance_id: str
                           ) -> AuditCheckpoint:
    """Record a change of the signing key (the KEK moved): signed by the new key, naming the old one.

    Verification trusts the old key only for checkpoints written before this one.
    """
    return write_checkpoint(session, new_signer, "rekey", appliance_id, {
        "old_key_id": public_key_id(old_public_pem), "old_public_key": old_public_pem,
        "new_key_id": new_signer.key_id})


# Events after the newest checkpoint are held by the hash chain alone, which whoever can write the
# database can recompute: they are signed within this long of arriving.
ANCHOR_MINUTES = 5


def checkpoint_if_due(appliance: _Appliance, *, quiet_after: dt.timedelta | None, reason: str = "") -> int | None:
    """Sign the chain head if events arrived since the newest checkpoint, or if none was written for
    ``quiet_after`` (an empty period is attested too; None: never for silence alone). Returns the new
    checkpoint's id, or None when nothing was due."""
    with appliance.store.read() as session:
        newest = latest_checkpoint(session)
        head = session.execute(select(AuditChainHead.last_id).where(AuditChainHead.id == HEAD_ID)).scalar_one()
        moved = newest is None or int(head) != int(newest.last_event_id)
        quiet = quiet_after is not None and (newest is None or newest.created_at <= utcnow() - quiet_after)
    if not (moved or quiet):
        return None
    return periodic_checkpoint(appliance, {"reason": reason} if reason else None)


def periodic_checkpoint(appliance: _Appliance, detail: Mapping[str, Any] | None = None) -> int:
    """Scheduler job: write a periodic checkpoint now, even if no event happened. Returns its id."""
    signer = signer_for(appliance)
    with appliance.store.unit_of_work() as session:
        row = write_checkpoint(session, signer, "periodic", appliance.settings.appliance_id, detail)
        checkpoint_id = int(row.id)
    log.debug("periodic audit checkpoint %s written", checkpoint_id)
    return checkpoint_id
