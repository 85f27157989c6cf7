"""The evaluation after a polling cycle: the records several connections stored since their evaluation
marks, judged together (evaluate.py's ``Evaluation.connections``) in one unit of work.

Judging a sync's few new records costs little; what the evaluation after a sync costs is its statements
(the owners' accounts, the employees and their groups, the alerts they have, the values, the inserts, the
mark) and the unit of work. Evaluated one connection at a time they were paid per connection; here they are
paid once for the connections a cycle synced, and only the reads that are one connection's own (its new
records, the FIFO context of what it traded) remain per connection.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from appliance.services.rules import facts, storing
from appliance.services.rules.evaluate import Evaluation, EvaluationResult, RuleCache
from appliance.services.rules.values import Valuer
from appliance.store.base import utcnow
from appliance.store.models import Alert, BalanceSnapshot, Connection, EvaluationMark, PredictionPosition, Transaction


@functools.cache
def _progress_many_statement() -> Any:
    """Per connection named: its newest record ids and its evaluation mark (one statement for a cycle)."""
    tops = [select(func.max(model.id)).where(model.connection_id == Connection.id).scalar_subquery()
            for model in (Transaction, PredictionPosition, BalanceSnapshot)]
    return select(Connection.id, *tops, EvaluationMark.connection_id, EvaluationMark.transaction_id,
                  EvaluationMark.position_id, EvaluationMark.balance_id).outerjoin(
        EvaluationMark, EvaluationMark.connection_id == Connection.id).where(
        Connection.id.in_(bindparam("ids", expanding=True)))


@dataclass
class _Progress:
    top: list[int]
    mark: list[int]
    had_mark: bool

    @property
    def new(self) -> bool:
        return not self.had_mark or any(t > m for t, m in zip(self.top, self.mark, strict=True))


def _progress_many(session: Session, connection_ids: Sequence[int]) -> dict[int, _Progress]:
    out: dict[int, _Progress] = {}
    connection = session.connection()
    for part in facts.chunks(sorted(set(connection_ids)), 900):
        for row in connection.execute(_progress_many_statement(), {"ids": part}):
            out[int(row[0])] = _Progress([int(v or 0) for v in row[1:4]], [int(v or 0) for v in row[5:8]],
                                         row[4] is not None)
    return out


def with_new_records(session: Session, connection_ids: Sequence[int]) -> list[int]:
    """Those of these connections that stored anything since their last evaluation (a read)."""
    return sorted(cid for cid, progress in _progress_many(session, connection_ids).items() if progress.new)


def evaluate_new_of(session: Session, valuer: Valuer, connection_ids: Sequence[int], cache: RuleCache | None = None
                    ) -> EvaluationResult:
    """``evaluate_new`` for several connections at once (a polling cycle's): the same records judged, the same
    alerts, the same marks moved, with the statements shared."""
    cache = cache or RuleCache()
    progress = {cid: p for cid, p in _progress_many(session, connection_ids).items() if p.new}
    if not progress:
        return EvaluationResult()
    compiled = cache.compiled(session)
    result = EvaluationResult()
    if compiled:
        since = {cid: cast(tuple[int, int, int], tuple(m if t > m else -1 for t, m in zip(p.top, p.mark, strict=True)))
                 for cid, p in progress.items()}
        result = Evaluation(session, [], valuer, compiled).connections(since)
    now = utcnow()
    storing.move_marks(session, [
        {"connection_id": cid, "transaction_id": max(p.top[0], p.mark[0]), "position_id": max(p.top[1], p.mark[1]),
         "balance_id": max(p.top[2], p.mark[2]), "updated_at": now} for cid, p in progress.items()])
    return result


def alerts_per_connection(session: Session, alert_ids: Sequence[int], connection_ids: Sequence[int]
                          ) -> dict[int, int]:
    """connection -> how many of these alerts it raised: those naming it, and those naming only its owner (a
    holding over a threshold sums every venue) counted for the first of these connections the owner has."""
    out: dict[int, int] = {}
    owners: dict[int, int] | None = None
    connection = session.connection()
    for part in facts.chunks(list(alert_ids), 900):
        for named, employee_id, count in connection.execute(_alerts_per_connection_statement(), {"ids": part}):
            if named is None and owners is None:
                owners = {}
                for cid, account in sorted(facts.accounts(session, connection_ids=connection_ids).items()):
                    owners.setdefault(account.employee_id, cid)
            raised_by = named if named is not None else (owners or {}).get(employee_id)
            if raised_by is not None:
                out[int(raised_by)] = out.get(int(raised_by), 0) + int(count)
    return out


@functools.cache
def _alerts_per_connection_statement() -> Any:
    return select(Alert.connection_id, Alert.employee_id, func.count()).where(
        Alert.id.in_(bindparam("ids", expanding=True))).group_by(Alert.connection_id, Alert.employee_id)
