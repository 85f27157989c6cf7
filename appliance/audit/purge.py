"""`vigatra audit purge --before`: remove events older than the retention period, and say so, signed.

Why this is the only way events leave: the audit tables are append-only (SQLite triggers;
PostgreSQL triggers plus INSERT/SELECT-only privileges for the application's role), and
retention is a regulatory minimum (default 6 years, SEC 17a-4). Purging runs as the database
owner: on SQLite the DELETE trigger is dropped and recreated inside the purge's own transaction;
on PostgreSQL the trigger lets a DELETE through only with ``SET LOCAL vigatra.audit_purge = 'on'``.

What makes the remaining chain verify: the removed events are always a prefix of the chain
(``purged_through_id`` only grows), the whole chain is verified before anything is deleted (a
purge must not launder tampering), and a signed ``purge`` checkpoint records the removed range,
its count and the hash of the last removed event — the anchor ``audit verify`` starts from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from appliance.audit.chain import format_timestamp
from appliance.audit.checkpoints import HEAD_ID, Signer, write_checkpoint
from appliance.audit.verify import verify_database
from appliance.audit.writer import AuditRecord, append, record_failure
from appliance.errors import Forbidden, IntegrityFailure, Invalid
from appliance.store.base import utcnow
from appliance.store.models import AuditChainHead, AuditEvent
from appliance.store.session import Store

log = logging.getLogger(__name__)

# The same statement as migration 0001 creates; recreated after the purge's DELETE.
_SQLITE_DELETE_TRIGGER = ("CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
                          "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END")


def retention_cutoff(days: int, now: dt.datetime | None = None) -> dt.datetime:
    return (now or utcnow()) - dt.timedelta(days=days)


@dataclass(frozen=True)
class PurgePlan:
    from_id: int
    through_id: int
    before: dt.datetime

    @property
    def count(self) -> int:
        return max(0, self.through_id - self.from_id + 1)


@dataclass(frozen=True)
class PurgeResult:
    removed: int
    from_id: int
    through_id: int
    last_removed_hash: str | None
    checkpoint_id: int | None


def check_retention(before: dt.datetime, days: int, now: dt.datetime | None = None) -> None:
    cutoff = retention_cutoff(days, now)
    if before > cutoff:
        raise Invalid(f"--before {format_timestamp(before)} is inside the retention period of {days} days: only "
                      f"events before {format_timestamp(cutoff)} may be purged", field="before")


def plan_purge(session: Session, before: dt.datetime) -> PurgePlan:
    """The prefix of the chain that is older than ``before`` (stops at the first newer event)."""
    head = session.execute(select(AuditChainHead).where(AuditChainHead.id == HEAD_ID)).scalar_one()
    purged = int(head.purged_through_id)
    first_kept = session.execute(select(func.min(AuditEvent.id)).where(
        AuditEvent.id > purged, AuditEvent.timestamp >= before)).scalar()
    through = int(first_kept) - 1 if first_kept is not None else int(head.last_id)
    return PurgePlan(purged + 1, max(through, purged), before)


def _delete_prefix(session: Session, from_id: int, through_id: int) -> int:
    where = (AuditEvent.id >= from_id, AuditEvent.id <= through_id)
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("DROP TRIGGER IF EXISTS audit_events_no_delete"))
        removed = session.execute(delete(AuditEvent).where(*where)).rowcount  # type: ignore[attr-defined]
        session.execute(text(_SQLITE_DELETE_TRIGGER))
        return int(removed)
    session.execute(text("SET LOCAL vigatra.audit_purge = 'on'"))
    try:
        removed = session.execute(delete(AuditEvent).where(*where)).rowcount  # type: ignore[attr-defined]
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "42501":  # insufficient_privilege: the app role, by design
            raise Forbidden("purging needs the database owner: the application's role may only read and insert "
                            "audit events (pass --database-url with the owner's role)") from None
        raise
    session.execute(text("SET LOCAL vigatra.audit_purge = 'off'"))
    return int(removed)


def purge_before(store: Store, signer: Signer, *, appliance_id: str, before: dt.datetime, days: int,
                 record: AuditRecord | None = None, now: dt.datetime | None = None,
                 verify_first: bool = True) -> PurgeResult:
    """Remove the events older than ``before`` (which must be beyond retention) and sign the record.

    ``store`` must connect as the database owner. Verifies the whole chain first (VerifyFailed
    stops the purge); the DELETE, the head update, the ``audit.purge`` event and the purge
    checkpoint commit together or not at all.
    """
    base = record or AuditRecord(action="audit.purge", actor_type="system")
    try:
        return _purge(store, signer, appliance_id=appliance_id, before=before, days=days, base=base, now=now,
                      verify_first=verify_first)
    except BaseException as exc:  # a refused purge is on the record too (tamper found, wrong role...)
        record_failure(store, base, action="audit.purge", detail={"before": format_timestamp(before)}, exc=exc)
        raise


def _purge(store: Store, signer: Signer, *, appliance_id: str, before: dt.datetime, days: int, base: AuditRecord,
           now: dt.datetime | None, verify_first: bool) -> PurgeResult:
    check_retention(before, days, now)
    if verify_first:
        verify_database(store, appliance_id=appliance_id, public_key_pem=signer.public_pem)
    with store.unit_of_work() as session:
        head = session.execute(
            select(AuditChainHead).where(AuditChainHead.id == HEAD_ID).with_for_update()).scalar_one()
        plan = plan_purge(session, before)
        if plan.count == 0:
            return PurgeResult(0, plan.from_id, plan.through_id, None, None)
        last_hash = session.execute(select(AuditEvent.hash).where(AuditEvent.id == plan.through_id)).scalar_one()
        removed = _delete_prefix(session, plan.from_id, plan.through_id)
        if removed != plan.count:
            raise IntegrityFailure(f"expected to remove {plan.count} events ({plan.from_id}..{plan.through_id}) but "
                                   f"found {removed}: run `vigatra audit verify`; nothing was purged")
        head.purged_through_id = plan.through_id
        session.flush()
        detail = {"removed_from_id": plan.from_id, "removed_through_id": plan.through_id, "removed_count": removed,
                  "last_removed_hash": last_hash, "before": format_timestamp(before), "retention_days": days}
        append(session, [dataclasses.replace(base, action="audit.purge", resource_type="audit",
                                             resource_id=f"{plan.from_id}-{plan.through_id}", outcome="success",
                                             detail=json.dumps(detail, sort_keys=True))])
        checkpoint = write_checkpoint(session, signer, "purge", appliance_id, detail)
        result = PurgeResult(removed, plan.from_id, plan.through_id, last_hash, int(checkpoint.id))
    log.warning("audit purge removed events %s..%s (%s)", result.from_id, result.through_id, result.removed)
    return result
