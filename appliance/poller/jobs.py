"""Scheduler jobs. Each is a plain function of the Appliance: small, idempotent, and safe to call
from the CLI or a test without a scheduler."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from appliance.services.context import Appliance
from appliance.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    id: str
    func: Callable[[Appliance], object]
    seconds: float
    first_run: dt.datetime | None = None


def flush_key_usage(appliance: Appliance) -> None:
    """Write API keys' last-used times, collected in memory by the edge, in one transaction (what a
    failed write did not store is written by the next run)."""
    from appliance.auth.state import usage_times
    from appliance.services import identity

    usage = appliance.auth.unwritten_key_usage()
    if usage:
        with appliance.store.unit_of_work() as session:
            identity.record_key_usage(session, usage_times(usage))
        appliance.auth.key_usage_written(usage)


def prune_expired(appliance: Appliance) -> None:
    """Forget revoked sessions past their natural expiry and stale failure counters; audit onboarding
    links that expired unused."""
    from appliance.services import login, onboarding

    with appliance.store.unit_of_work() as session:
        login.prune_revoked_sessions(session)
        login.prune_throttle(session)
        onboarding.audit_expired_links(session)


def poll_tick(appliance: Appliance) -> None:
    """One polling cycle: every due connection this node can lease."""
    from sqlalchemy.exc import DBAPIError

    from appliance.services.sync import run_cycle
    from appliance.store.session import describe_db_error

    try:
        result = run_cycle(appliance)
    except DBAPIError as exc:  # e.g. PostgreSQL restarting: the next tick tries again
        log.warning("polling cycle failed: database unavailable (%s)", describe_db_error(exc))
        return
    except Exception as exc:  # noqa: BLE001 - the scheduler must keep ticking; the next tick tries again
        log.warning("polling cycle failed: %s", type(exc).__name__)
        return
    if result.outcomes:
        log.info("polled %d connection(s), %d failed", len(result.outcomes), len(result.failed))


def price_tick(appliance: Appliance) -> None:
    """One pricing run: current prices of what is held, values of new transactions. Its own job, so a sync
    never waits on pricing; values appear when it has run."""
    from sqlalchemy.exc import DBAPIError

    from appliance.services.valuation.job import run_pricing
    from appliance.store.session import describe_db_error

    try:
        result = run_pricing(appliance)
    except DBAPIError as exc:
        log.warning("pricing run failed: database unavailable (%s)", describe_db_error(exc))
        return
    except Exception as exc:  # noqa: BLE001 - the scheduler must keep ticking; the next run tries again
        log.warning("pricing run failed: %s", type(exc).__name__)
        return
    if result.transactions or result.assets_unpriced:
        log.info("priced: %s", "; ".join(result.lines()))
    if result.transactions:
        from appliance.services import conduct

        try:  # thresholds over records that had no value until this run
            conduct.revalue(appliance)
        except Exception as exc:  # noqa: BLE001 - the next pricing run tries again
            log.warning("threshold re-evaluation after pricing failed: %s", type(exc).__name__)


def audit_checkpoint(appliance: Appliance) -> None:
    """A signed checkpoint of the audit chain: within ANCHOR_MINUTES of new events, and every
    audit.checkpoint_minutes even when nothing happened (silence is attested too)."""
    from appliance.audit.checkpoints import checkpoint_if_due

    checkpoint_if_due(appliance, quiet_after=dt.timedelta(minutes=appliance.settings.audit.checkpoint_minutes))


def scheduled_backup(appliance: Appliance) -> None:
    """An encrypted backup into backup.dest, then the oldest scheduled ones beyond backup.retention_count
    deleted. A failure is logged and audited (by the backup service); the next run tries again."""
    from appliance.errors import VigatraError
    from appliance.services.backup import scheduled_backup as run_backup

    try:
        result = run_backup(appliance.store, appliance.settings, appliance.keys.provider)
    except VigatraError as exc:
        log.error("scheduled backup failed: %s", exc.message)
        return
    if result is not None:
        log.info("%s", result.line())


def directory_sync(appliance: Appliance) -> None:
    """Directory users' roles and status refreshed from the directory (a removed group removes the role, a
    disabled account is disabled here). A directory outage changes nothing; the next run tries again."""
    from appliance.errors import VigatraError
    from appliance.services.directory.sync import sync_ldap_users

    try:
        report = sync_ldap_users(appliance)
    except VigatraError as exc:
        log.warning("directory sync failed: %s", exc.message)
        return
    if report.changes:
        log.info("%s", report.line())


def roster_ldap(appliance: Appliance) -> None:
    _roster(appliance, "ldap")


def roster_files(appliance: Appliance) -> None:
    _roster(appliance, "files")


def _roster(appliance: Appliance, source: str) -> None:
    """A roster source's scheduled run (a dry run until an admin applied it once; see services/roster)."""
    from appliance.errors import VigatraError
    from appliance.services.roster.sync import scheduled_sync

    try:
        report = scheduled_sync(appliance, source)
    except VigatraError as exc:
        log.warning("roster %s sync failed: %s", source, exc.message)
        return
    if report is not None and any(c.kind != "unchanged" for c in report.changes):
        log.info("%s (%s%s)", report.summary(), source, "" if report.applied else ", awaiting review")


def attestations_tick(appliance: Appliance) -> None:
    """Initial-holdings tasks for new access persons (whatever made them one), then the reminder e-mails due
    today (each task remembers when it was reminded, so a rerun sends nothing twice)."""
    from appliance.services.attestations import campaigns, reminders

    with appliance.store.unit_of_work() as session:
        created = campaigns.ensure_initial_tasks(session, appliance.settings)
        sent = reminders.send_due(session, appliance.mailer, appliance.settings)
    if created or sent.before or sent.after:
        log.info("attestations: %d initial-holdings task(s) created, %d reminder(s) before and %d after due",
                 len(created), len(sent.before), len(sent.after))


def extra_jobs(settings: Settings) -> list[JobSpec]:
    from appliance.audit.checkpoints import ANCHOR_MINUTES

    now = dt.datetime.now(dt.UTC)
    every = min(settings.audit.checkpoint_minutes, ANCHOR_MINUTES) * 60
    jobs = [JobSpec("audit_checkpoint", audit_checkpoint, every, now + dt.timedelta(seconds=5)),
            JobSpec("attestations", attestations_tick, 15 * 60, now + dt.timedelta(minutes=1))]
    if settings.backup.dest:
        jobs.append(JobSpec("scheduled_backup", scheduled_backup, settings.backup.interval_hours * 3600,
                            now + dt.timedelta(minutes=10)))
    if settings.directory.ldap.enabled:
        jobs.append(JobSpec("directory_sync", directory_sync, settings.directory.ldap.sync_interval_minutes * 60,
                            now + dt.timedelta(minutes=1)))
    if settings.roster.ldap.enabled:
        jobs.append(JobSpec("roster_ldap", roster_ldap, settings.roster.ldap.interval_minutes * 60,
                            now + dt.timedelta(minutes=2)))
    if settings.roster.files.directory:
        jobs.append(JobSpec("roster_files", roster_files, settings.roster.files.interval_minutes * 60,
                            now + dt.timedelta(minutes=2)))
    if settings.poller.enabled:
        jobs.append(JobSpec("poll_tick", poll_tick, settings.poller.tick_seconds, now + dt.timedelta(seconds=2)))
        if settings.valuation.enabled:
            # After the first poll tick has had time to store balances; then on its own interval.
            jobs.append(JobSpec("price_tick", price_tick, settings.valuation.interval_minutes * 60,
                                now + dt.timedelta(seconds=max(20, settings.poller.tick_seconds))))
    return jobs
