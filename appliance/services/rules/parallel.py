"""A whole history judged by worker processes (``rules.workers``): a list or rule change over thousands
of employees is CPU-bound Python (reading and converting rows, judging each record, valuing candidates),
and one process uses one core.

How it stays correct:
- The batches of employees are a deterministic partition (evaluate.py's, in employee id order); each
  employee's records are read and judged by exactly one worker, so everything that is per employee (the
  FIFO lots, one alert per undisclosed address, the holdings) is judged as the serial path judges it.
- Workers only read (each its own engine and connection; a fresh read transaction per batch). What they
  are given comes from the caller's unit of work: the compiled rules and lists, the employees with their
  groups, the evaluation's "now" — so an uncommitted change (the list entry just added, the members just
  added to a group) is what they judge by.
- The caller's process writes everything, batch by batch in order, in its own unit of work: alerts (the
  unique (rule, record) key keeps one per record, whatever else is evaluating), unvalued records, records
  valued now. SQLite's single writer is this one connection; the workers' reads do not block it (WAL).
- A worker that fails fails the evaluation, like a failure in the serial path: the unit of work rolls back.
  Processes that cannot be started at all (a sandbox that refuses them, no shared memory for the pool's
  queues) are :class:`WorkersUnavailable` before anything is written: the caller judges serially instead.

Processes are started with "spawn" (never fork: the caller is a threaded server), once per evaluation.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from appliance.services.rules.collector import collector_paused
from appliance.services.rules.facts import Person

if TYPE_CHECKING:
    from appliance.services.rules.evaluate import Evaluation

MAX_AUTO_WORKERS = 4


class WorkersUnavailable(Exception):
    """The worker processes could not be started; nothing was written."""


def resolve_workers(setting: int) -> int:
    """``rules.workers``: 0 means one per CPU core this process may use (at most MAX_AUTO_WORKERS)."""
    if setting > 0:
        return setting
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_AUTO_WORKERS))


def judge_in_workers(evaluation: Evaluation, batches: Sequence[dict[int, Person]], workers: int) -> None:
    """Read and judge the batches in ``workers`` processes; write each batch's findings here, in order, as
    they come back."""
    url = evaluation.session.get_bind().engine.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    written = 0
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(batches)), mp_context=context, initializer=_start,
                                 initargs=(url, evaluation.compiled, evaluation.valuer, evaluation.now,
                                           evaluation.compare_unvalued)) as pool:
            for rows, settlement, counts in pool.map(_judge, batches):
                evaluation.write(rows, settlement)
                written += 1
                result = evaluation.result
                result.employees += counts[0]
                result.transactions += counts[1]
                result.positions += counts[2]
                result.balances += counts[3]
    except (OSError, BrokenProcessPool) as exc:
        if written:
            raise
        raise WorkersUnavailable(f"{type(exc).__name__}: {exc}") from exc


# -- in a worker process ------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _start(url: str, compiled: Any, valuer: Any, now: Any, compare_unvalued: bool) -> None:
    from appliance.store.session import make_engine

    _WORKER.update(engine=make_engine(url, pool_size=1), compiled=compiled, valuer=valuer, now=now,
                   compare_unvalued=compare_unvalued)


def _judge(persons: dict[int, Person]) -> tuple[Any, ...]:
    from appliance.services.rules.evaluate import Evaluation

    with collector_paused(), Session(_WORKER["engine"]) as session:
        evaluation = Evaluation(session, [], _WORKER["valuer"], _WORKER["compiled"])
        evaluation.now = _WORKER["now"]
        evaluation.compare_unvalued = _WORKER["compare_unvalued"]
        evaluation.read_and_judge(persons)
        rows, settlement = evaluation.settled()
        session.rollback()
    result = evaluation.result
    counts = (result.employees, result.transactions, result.positions, result.balances)
    return rows, settlement, counts
