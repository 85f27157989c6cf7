"""Polling cycles: claim due connections and sync them on a pool of threads, and record each cycle."""

from __future__ import annotations

import datetime as dt
import logging
import queue
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from appliance.services.context import Appliance
from appliance.services.sync.claiming import (
    POLLED,
    backlog,
    claim_due,
    interval_for,
    release_stale_leases,
    unit_of_work,
)
from appliance.services.sync.connection import SyncOutcome, sync_connection
from appliance.services.sync.health import release
from appliance.store.base import utcnow
from appliance.store.models import Connection, PollCycle

log = logging.getLogger(__name__)

EVALUATION_BATCH = 200  # connections synced before the rules judge them together (see _evaluate)


@dataclass
class CycleResult:
    started_at: dt.datetime
    finished_at: dt.datetime
    outcomes: list[SyncOutcome] = field(default_factory=list)
    backlog: int = 0

    @property
    def failed(self) -> list[SyncOutcome]:
        return [o for o in self.outcomes if not o.ok]

    def failures_by_class(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for o in self.failed:
            out[o.error_class or "unknown"][o.venue] += 1
        return {k: dict(v) for k, v in out.items()}

    def lines(self) -> list[str]:
        seconds = (self.finished_at - self.started_at).total_seconds()
        lines = [f"cycle: {len(self.outcomes)} connection(s) polled in {seconds:.1f}s, "
                 f"{len(self.outcomes) - len(self.failed)} ok, {len(self.failed)} failed, backlog {self.backlog}"]
        for o in self.outcomes:
            state = "ok" if o.ok else f"FAILED ({o.error_class}: {o.message})"
            alerts = f", {o.alerts} alert(s) raised" if o.alerts else ""
            lines.append(f"connection {o.connection_id} {o.venue}: {state}, {o.records} new record(s){alerts}")
        return lines


def run_cycle(app: Appliance, *, only: int | None = None, force: bool = False) -> CycleResult:
    """One polling cycle of this node: claim due connections and sync them on a pool of
    ``poller.workers`` threads, claiming more whenever the queue runs low (a slow account holds up
    one worker, not a whole batch).

    Once the process is stopping (``app.stopping``, set at SIGTERM) the cycle claims nothing more and
    starts no claimed sync that has not begun; syncs in flight finish, or stop at their next commit
    when their grace has passed (:class:`~.claiming.ShuttingDown`); then every lease this node still
    holds is given back, leaving those connections due for the next node or the next start."""
    started = utcnow()
    if app.stopping.is_set():  # a tick that fired after SIGTERM: nothing to claim, nothing to record
        return CycleResult(started, started)
    workers = app.settings.poller.workers
    if only is None:
        release_stale_leases(app)
    outcomes: list[SyncOutcome] = []
    # Connections already polled in this cycle. Every outcome moves next_poll_at ahead, so one is
    # claimed again only through a bug or a clock jump; it is then given back, not polled twice.
    seen: set[int] = set()
    finished: queue.SimpleQueue[SyncOutcome] = queue.SimpleQueue()

    def work(connection_id: int) -> None:
        outcome = SyncOutcome(connection_id, "?", False, "internal", "the poll thread stopped")
        try:
            if app.stopping.is_set():  # claimed, not begun: its lease is given back below
                outcome = SyncOutcome(connection_id, "?", False, "shutdown", "not started: shutting down")
            else:
                outcome = _sync_isolated(app, connection_id)
                if outcome.error_class == "lease_lost" and app.stopping.must_checkpoint():
                    outcome.error_class, outcome.message = "shutdown", "stopped at a checkpoint: shutting down"
        finally:  # always answer, or the loop below would wait for this connection for ever
            finished.put(outcome)

    # Connections synced and not yet evaluated: the rules judge them together (``_evaluate``), every
    # EVALUATION_BATCH while the pool syncs the others, and the rest when the last sync has ended.
    synced: list[SyncOutcome] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
        running = 0
        more = True
        while True:
            if more and app.stopping.is_set():
                more = False
                log.info("shutting down: claiming no more connections; %d sync(s) in flight", running)
            if more and running <= workers:
                ids = claim_due(app, limit=2 * workers - running, only=only, force=force)
                fresh = [cid for cid in ids if cid not in seen]
                for cid in ids:
                    if cid in seen:
                        release(app, cid, interval_for_id(app, cid))
                seen.update(fresh)
                for cid in fresh:
                    pool.submit(work, cid)
                running += len(fresh)
                more = bool(fresh) and only is None
            if not running:
                break
            outcome = finished.get()
            outcomes.append(outcome)
            running -= 1
            if outcome.ok or outcome.records:
                synced.append(outcome)
            if len(synced) >= EVALUATION_BATCH:
                _evaluate(app, synced)
                synced = []
    _evaluate(app, synced)
    if app.stopping.is_set():
        # Every sync of this cycle has ended, so none of this node's leases belongs to one in flight.
        released = release_stale_leases(app)
        stopped = sum(1 for o in outcomes if o.error_class == "shutdown")
        log.info("shutting down: polling stopped (%d sync(s) stopped or not started, %d lease(s) given back)",
                 stopped, released)
    result = CycleResult(started, utcnow(), outcomes, backlog(app))
    _record_cycle(app, result)
    return result


def _sync_isolated(app: Appliance, connection_id: int) -> SyncOutcome:
    """sync_connection, with whatever escapes it (its bookkeeping failed too) turned into an outcome:
    one connection never ends the cycle of the others."""
    started = time.thread_time()  # this thread's CPU: what the sync itself costs (bench/bench_rules.py)
    try:
        outcome = sync_connection(app, connection_id)
        outcome.cpu_ms = (time.thread_time() - started) * 1000
    except Exception as exc:  # noqa: BLE001 - reported as this connection's outcome
        log.warning("sync of connection %s could not record its outcome: %s", connection_id, type(exc).__name__)
        error_class = "database" if isinstance(exc, DBAPIError) else "internal"
        return SyncOutcome(connection_id, "?", False, error_class, type(exc).__name__)
    if outcome.records:
        _differences(app, outcome)
    return outcome


def _differences(app: Appliance, outcome: SyncOutcome) -> None:
    """Records this sync stored that fall in a period the employee already certified raise an alert
    (services/attestations/differences.py), in a unit of work of its own; a failure is retried by the next
    sync that stores records (the comparison is against everything stored, not only this sync's rows)."""
    from appliance.services.attestations import differences

    try:
        with app.store.unit_of_work() as session:
            connection = session.get(Connection, outcome.connection_id)
            if connection is not None:
                differences.check_employee(session, connection.employee_id)
    except Exception as exc:  # noqa: BLE001 - logged; retried with the next sync
        log.warning("certified periods not compared after the sync of connection %s: %s", outcome.connection_id,
                    type(exc).__name__)


def _evaluate(app: Appliance, outcomes: list[SyncOutcome]) -> None:
    """The conduct rules over what these syncs stored (services/conduct.py), together in a unit of work of
    their own after the syncs' last commits; each outcome gets its alerts and an equal share of the CPU.
    A failure never turns into a sync's failure: the marks did not move, so the next sync evaluates those
    records. When the batch fails, each connection is tried on its own, so one cannot hold up the others."""
    from appliance.services import conduct

    if not outcomes:
        return
    started = time.thread_time()
    try:
        _, alerts = conduct.evaluate_connections(app, [o.connection_id for o in outcomes],
                                                 stored=[o.connection_id for o in outcomes if o.records > 0])
    except Exception as exc:  # noqa: BLE001 - logged; each tried alone below
        alerts = {}
        log.warning("rules not evaluated after the sync of %s: %s",
                    f"{len(outcomes)} connections (now one at a time)" if len(outcomes) > 1 else
                    f"connection {outcomes[0].connection_id}", type(exc).__name__)
        for outcome in outcomes if len(outcomes) > 1 else ():
            try:
                result = conduct.evaluate_connection(app, outcome.connection_id, stored=outcome.records > 0)
                alerts[outcome.connection_id] = len(result.alert_ids)
            except Exception as one:  # noqa: BLE001 - logged; retried with the next sync
                log.warning("rules not evaluated after the sync of connection %s: %s", outcome.connection_id,
                            type(one).__name__)
    share = (time.thread_time() - started) * 1000 / len(outcomes)
    for outcome in outcomes:
        outcome.alerts = alerts.get(outcome.connection_id, 0)
        outcome.rules_cpu_ms = share
        outcome.cpu_ms += share


def interval_for_id(app: Appliance, connection_id: int) -> dt.timedelta:
    with app.store.read() as session:
        connection = session.get(Connection, connection_id)
        return interval_for(app, connection) if connection is not None else dt.timedelta(
            minutes=app.settings.poller.interval_minutes)


def _record_cycle(app: Appliance, result: CycleResult) -> None:
    with unit_of_work(app) as session:
        session.add(PollCycle(
            node=app.node_id, started_at=result.started_at, finished_at=result.finished_at,
            duration_seconds=(result.finished_at - result.started_at).total_seconds(), polled=len(result.outcomes),
            succeeded=len(result.outcomes) - len(result.failed), failures=result.failures_by_class(),
            backlog=result.backlog))


def request_sync(session: Session, connection_id: int) -> Connection:
    """"Sync now": make the connection due at once; the next scheduler tick polls it."""
    connection = session.get(Connection, connection_id)
    if connection is None:
        from appliance.errors import NotFound

        raise NotFound("not found")
    if connection.status not in POLLED:
        from appliance.errors import Conflict

        raise Conflict(f"a {connection.status} connection is not polled")
    connection.next_poll_at = utcnow()
    session.flush()
    return connection
