"""Evaluating the rules: over the whole history (a list or rule changed, `vigatra rules evaluate`) or
over the records one sync just stored. Idempotent: an alert is keyed by (rule, record) and a unique
constraint keeps it one, however often and however concurrently the same records are evaluated.

Runs inside the caller's unit of work (flushes, never commits): the alerts it raises commit with
the change or the sync that caused them, and the caller sends the notifications after the commit.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from appliance.services.rules import facts, parallel, storing, unvalued
from appliance.services.rules.catalogue import list_rules
from appliance.services.rules.collector import collector_paused
from appliance.services.rules.common import Audience
from appliance.services.rules.facts import TRADE_KINDS, Account, Person, Position, Snapshot, Tx
from appliance.services.rules.judge import CompiledRule, Finding, Judge, settle
from appliance.services.rules.lists import matchers
from appliance.services.rules.values import Valuer
from appliance.store.base import utcnow
from appliance.store.models import (
    Alert,
    AlertEvent,
    BalanceSnapshot,
    ConductChange,
    ConductList,
    EvaluationMark,
    Rule,
)
from appliance.store.params import dialect_of, one_of

log = logging.getLogger(__name__)

EMPLOYEE_BATCH = 500


@dataclass
class EvaluationResult:
    alert_ids: list[int] = field(default_factory=list)
    critical_ids: list[int] = field(default_factory=list)
    rules: int = 0
    employees: int = 0
    transactions: int = 0
    positions: int = 0
    balances: int = 0
    unvalued: int = 0

    def add(self, other: EvaluationResult) -> None:
        self.alert_ids += other.alert_ids
        self.critical_ids += other.critical_ids
        self.employees += other.employees
        self.transactions += other.transactions
        self.positions += other.positions
        self.balances += other.balances
        self.unvalued += other.unvalued

    def summary(self) -> dict[str, int]:
        return {"rules": self.rules, "employees": self.employees, "transactions": self.transactions,
                "positions": self.positions, "balances": self.balances, "alerts_raised": len(self.alert_ids),
                "could_not_be_valued": self.unvalued}

    def lines(self) -> list[str]:
        s = self.summary()
        return [f"evaluated {s['rules']} rule(s) over {s['employees']} employee(s): "
                f"{s['transactions']} transaction(s), {s['positions']} new position(s), {s['balances']} new holding(s)",
                f"alerts raised: {s['alerts_raised']} ({len(self.critical_ids)} critical)",
                f"records that could not be valued: {s['could_not_be_valued']}"]


def compile_rules(session: Session, rules: Sequence[Rule]) -> list[CompiledRule]:
    list_ids = sorted({int(r.params["list_id"]) for r in rules if r.params.get("list_id")})
    found = matchers(session, list_ids)
    list_facts = {row.id: (row.name, Audience.of(row.applies_to)) for row in session.execute(
        select(ConductList).where(ConductList.id.in_(list_ids))).scalars()} if list_ids else {}
    return [CompiledRule.of(r, found, list_facts) for r in rules if r.enabled]


class _Needs:
    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        kinds = {r.kind for r in rules}
        lists = [r for r in rules if r.kind in ("restricted", "watch")]
        self.transactions = bool(kinds & {"restricted", "watch", "blackout", "threshold", "new_account",
                                          "holding_period"})
        self.positions = bool(lists) or any(r.kind == "threshold" and "position" in r.params.get("on", ())
                                            for r in rules)
        self.snapshots = bool(lists)
        self.holdings = any(r.kind == "threshold" and "holding" in r.params.get("on", ()) for r in rules)
        self.raw_transfers = "new_account" in kinds
        self.raw_predictions = any(r.matcher is not None and r.matcher.has_market_entries for r in rules)


class Evaluation:
    """One evaluation run: compiled rules, the valuer, and the findings stored as it goes."""

    def __init__(self, session: Session, rules: Sequence[Rule], valuer: Valuer,
                 compiled: Sequence[CompiledRule] | None = None, *, workers: int = 1) -> None:
        self.session = session
        self.workers = workers  # processes judging a whole history's batches (1: this process alone)
        self.compiled = list(compiled) if compiled is not None else compile_rules(session, rules)
        self.judge = Judge(self.compiled)
        self.needs = _Needs(self.compiled)
        self.valuer = valuer
        self.now = utcnow()
        self.result = EvaluationResult(rules=len(self.compiled))
        self._findings: list[Finding] = []
        self._candidates: list[Any] = []
        # After a sync: the unique (rule, record) key alone keeps alerts single (see ``settled``).
        self.incremental = False
        # Whether records that could not be valued were ever recorded (else nothing to compare; see ``history``).
        self.compare_unvalued = True

    # -- the whole history -------------------------------------------------------------------------
    def history(self, employee_ids: Sequence[int] | None = None) -> EvaluationResult:
        if not self.compiled:
            return self.result
        persons = facts.people(self.session, employee_ids)
        ids = [pid for pid, person in persons.items() if self.judge.applicable(person)]
        batches = [{i: persons[i] for i in batch} for batch in facts.chunks(ids, EMPLOYEE_BATCH)]
        self.compare_unvalued = unvalued.any_recorded(self.session)
        with collector_paused():
            if self.workers > 1 and len(batches) > 1:
                try:
                    parallel.judge_in_workers(self, batches, self.workers)
                    batches = []
                except parallel.WorkersUnavailable as exc:
                    log.warning("rules: worker processes could not be started (%s); judging in this process", exc)
            for batch in batches:
                self.read_and_judge(batch)
                self._flush()
        return self.result

    def read_and_judge(self, persons: dict[int, Person]) -> None:
        """Read a batch of employees' records and judge them; what is found waits for ``settled``."""
        session = self.session
        accounts = facts.accounts(session, employee_ids=list(persons))
        by_employee: dict[int, dict[int, Account]] = defaultdict(dict)
        for account in accounts.values():
            by_employee[account.employee_id][account.id] = account
        txs: dict[int, list[Tx]] = defaultdict(list)
        if self.needs.transactions:
            raw_kinds = facts.TRANSFER_KINDS if self.needs.raw_transfers else frozenset()
            raw_conns = [a.id for a in accounts.values() if a.kind == "prediction"] if self.needs.raw_predictions \
                else []
            rows = facts.transactions_of_connections(session, accounts, raw_of=(raw_kinds, raw_conns))
            for tx in rows:
                txs[accounts[tx.connection_id].employee_id].append(tx)
            self.result.transactions += len(rows)
        positions: dict[int, list[Position]] = defaultdict(list)
        openings: dict[int, list[Position]] = defaultdict(list)
        prediction_conns = [a.id for a in accounts.values() if a.kind == "prediction"]
        if prediction_conns and (self.needs.positions or self.needs.raw_predictions):
            rows_p = facts.positions_of_connections(session, prediction_conns)
            for p in rows_p:
                positions[accounts[p.connection_id].employee_id].append(p)
            if self.needs.positions:
                for p in facts.openings(rows_p, lambda r: (r.connection_id, r.market_id, r.outcome), lambda r: r.size):
                    openings[accounts[p.connection_id].employee_id].append(p)
        snaps: dict[int, list[Snapshot]] = defaultdict(list)
        holdings: dict[int, dict[str, tuple[Decimal, list[Snapshot]]]] = defaultdict(dict)
        if self.needs.snapshots or self.needs.holdings:
            rows_s = facts.snapshots_of_connections(session, accounts)
            if self.needs.snapshots:
                for s in facts.openings(rows_s, lambda r: (r.connection_id, r.asset, r.account), lambda r: r.amount):
                    snaps[accounts[s.connection_id].employee_id].append(s)
            if self.needs.holdings:
                for employee_id, held in _current_holdings(rows_s, accounts).items():
                    holdings[employee_id] = held
        self.judge.seen = self._alerted(list(persons))
        if snaps:
            first = _first_activity(t for rows in txs.values() for t in rows)
            for employee_id in list(snaps):
                snaps[employee_id] = _unexplained(snaps[employee_id], first)
        for employee_id, person in persons.items():
            self._judge(person, by_employee.get(employee_id, {}), txs.get(employee_id, []),
                        positions.get(employee_id, []), openings.get(employee_id, []), snaps.get(employee_id, []),
                        holdings.get(employee_id, {}), None)
        self.result.employees += len(persons)

    def _attach_raw(self, rows: Sequence[Tx], accounts: dict[int, Account]) -> None:
        wanted = [t for t in rows if (self.needs.raw_transfers and t.kind in facts.TRANSFER_KINDS)
                  or (self.needs.raw_predictions and accounts[t.connection_id].kind == "prediction")]
        if wanted:
            facts.attach_raw(self.session, wanted)

    def _judge(self, person: Person, accounts: dict[int, Account], txs: Sequence[Tx], positions: Sequence[Position],
               openings: Sequence[Position], snapshots: Sequence[Snapshot],
               holdings: dict[str, tuple[Decimal, list[Snapshot]]], judged_tx: set[int] | None) -> None:
        """Judge one employee; what it finds is kept and stored by ``_flush`` (once per batch of employees:
        a statement per employee would cost more than the judging)."""
        catalogue = facts.market_catalogue(positions)
        judgement = self.judge.employee(person, accounts, txs, openings, snapshots, holdings, catalogue,
                                        now=self.now, judged_tx=judged_tx)
        self.result.positions += len(openings)
        self.result.balances += len(snapshots)
        self._findings.extend(judgement.findings)
        self._candidates.extend(judgement.candidates)

    def _flush(self) -> None:
        self.write(*self.settled())

    def settled(self) -> tuple[list[tuple[Any, ...]], unvalued.Settlement]:
        """What was judged since the last call, with the threshold candidates valued: the alert rows to insert
        (prepared for the driver, storing.ALERT_COLUMNS) and what changes in the records that could not be
        valued. Database reads only: a worker process may do this (parallel.py)."""
        found, self._findings = self._findings, []
        candidates, self._candidates = self._candidates, []
        settlement = unvalued.Settlement()
        if candidates:
            if self.incremental and len(candidates) > 1:
                # Two connections of one employee judged together name the same holdings: valued once.
                unique = {(c.rule.id, c.record_key): c for c in candidates}
                candidates = list(unique.values())
            valuations = self.valuer.value(self.session, [c.priced for c in candidates])
            over, missing, valued = settle(candidates, valuations)
            found.extend(over)
            # Compared with what is recorded (one read by key), so the insert seldom meets a recorded key: a holding
            # that cannot be valued is found again by every sync that stores a balance of it.
            settlement = unvalued.sort_out(self.session, missing, valued, compare=self.compare_unvalued,
                                           employee_ids={c.employee_id for c in candidates})
        dialect = self.session.get_bind().dialect
        return storing.prepared(dialect, Alert, storing.ALERT_COLUMNS, storing.alert_rows(found)), settlement

    def write(self, rows: Sequence[tuple[Any, ...]], settlement: unvalued.Settlement) -> None:
        """Store what ``settled`` returned: alerts, and the records that could not be valued."""
        unvalued.write(self.session, settlement)
        self.result.unvalued += settlement.found
        if rows:
            self._store(rows)

    # -- the records one sync stored -------------------------------------------------------------------
    def connection(self, connection_id: int, *, transaction_ids: Sequence[int] | None = None,
                   position_ids: Sequence[int] | None = None, balance_ids: Sequence[int] | None = None,
                   since: tuple[int, int, int] | None = None) -> EvaluationResult:
        """Judge new records of one connection, named by id or as everything after ``since`` (transaction,
        position, balance ids), with the employee's other records as context (see ``connections``)."""
        if not self.compiled:
            return self.result
        accounts = facts.accounts_of_owner(self.session, connection_id)
        account = accounts.get(connection_id)
        if account is None:
            return self.result
        person = facts.people(self.session, [account.employee_id]).get(account.employee_id)
        if person is None or not self.judge.applicable(person):
            return self.result
        self.incremental = True
        self.judge.seen = self._alerted([person.id])
        self._records(person, account, accounts, since, transaction_ids, position_ids, balance_ids)
        self._flush()
        self.result.employees = 1
        return self.result

    def connections(self, since: dict[int, tuple[int, int, int]]) -> EvaluationResult:
        """Judge what several connections stored after ``since`` (connection -> transaction, position, balance
        ids; -1: nothing new of that kind), as ``connection`` does for one, with what they share read once:
        the owners' accounts, the employees and their groups, the alerts they have, the values, the inserts
        (a polling cycle's connections: statements, not rows, are what an evaluation after a sync costs)."""
        if not self.compiled or not since:
            return self.result
        every = facts.accounts_of_owners(self.session, list(since))
        by_employee: dict[int, dict[int, Account]] = defaultdict(dict)
        for account in every.values():
            by_employee[account.employee_id][account.id] = account
        persons = facts.people(self.session, sorted(by_employee))
        judged = {pid for pid, person in persons.items() if self.judge.applicable(person)}
        if not judged:
            return self.result
        self.incremental = True
        self.judge.seen = self._alerted(sorted(judged))
        mine = {cid: marks for cid, marks in since.items() if cid in every and every[cid].employee_id in judged}
        new_txs = facts.transactions_after(self.session, {cid: marks[0] for cid, marks in mine.items()
                                                          if marks[0] >= 0}) if self.needs.transactions else {}
        for connection_id, marks in mine.items():
            own = every[connection_id]
            self._records(persons[own.employee_id], own, by_employee[own.employee_id], marks,
                          new=new_txs.get(connection_id, []))
        self._flush()
        self.result.employees = len(judged)
        return self.result

    def _records(self, person: Person, account: Account, accounts: dict[int, Account],
                 since: tuple[int, int, int] | None, transaction_ids: Sequence[int] | None = None,
                 position_ids: Sequence[int] | None = None, balance_ids: Sequence[int] | None = None, *,
                 new: list[Tx] | None = None) -> None:
        """Judge one connection's new records (by id, or after ``since``; ``new``: its new transactions, read
        already) with the employee's other records as context: the FIFO lots of the holding period, the series
        a position or a holding opens. This runs after every sync that stored something, so it reads only what
        it needs."""
        session = self.session
        connection_id = account.id
        new_txs: list[Tx] = new if new is not None else []
        if new is None and self.needs.transactions and (transaction_ids or (since and since[0] >= 0)):
            new_txs = facts.transactions_of_connections(
                session, [connection_id], ids=transaction_ids if since is None else None,
                since_id=since[0] if since is not None else 0)
        context = list(new_txs)
        traded = {t.asset for t in new_txs if t.kind in TRADE_KINDS}
        if traded and any(r.kind == "holding_period" for r in self.judge.applicable(person)):
            # Every buy and sell of those assets on every venue and wallet: a buy stored late (its venue
            # synced after the sell's) still counts, and the FIFO needs the whole story.
            context = facts.transactions_of_connections(session, accounts, kinds=TRADE_KINDS, assets=traded)
            seen = {t.id for t in context}
            context += [t for t in new_txs if t.id not in seen]
            context.sort(key=lambda t: (t.occurred_at, t.id))
        self._attach_raw(context, accounts)
        positions: list[Position] = []
        openings: list[Position] = []
        new_positions = bool(position_ids) if since is None else since[1] >= 0
        if account.kind == "prediction" and new_positions and (self.needs.positions or self.needs.raw_predictions):
            positions = facts.positions_of_connections(session, [a.id for a in accounts.values()
                                                                  if a.kind == "prediction"])
            if self.needs.positions:
                mine = [p for p in positions if p.connection_id == connection_id]
                fresh = (lambda p: p.id in set(position_ids or ())) if since is None else (lambda p: p.id > since[1])
                openings = [p for p in facts.openings(mine, lambda r: (r.market_id, r.outcome), lambda r: r.size)
                            if fresh(p)]
        snaps: list[Snapshot] = []
        holdings: dict[str, tuple[Decimal, list[Snapshot]]] = {}
        new_balances = bool(balance_ids) if since is None else since[2] >= 0
        if new_balances and (self.needs.snapshots or self.needs.holdings):
            every = facts.snapshots_of_connections(
                session, accounts, changed_ids=(connection_id, list(balance_ids or ())) if since is None else None,
                changed_after=(connection_id, since[2]) if since is not None else None)
            if self.needs.snapshots:
                mine_s = [x for x in every if x.connection_id == connection_id]
                fresh_s = (lambda x: x.id in set(balance_ids or ())) if since is None else (lambda x: x.id > since[2])
                snaps = [x for x in facts.openings(mine_s, lambda r: (r.asset, r.account), lambda r: r.amount)
                         if fresh_s(x)]
                if snaps:
                    first = _first_activity(facts.transactions_of_connections(
                        session, [connection_id], kinds=facts.TOUCHING_KINDS, assets={x.asset for x in snaps}))
                    snaps = _unexplained(snaps, first)
            if self.needs.holdings:
                holdings = _current_holdings(every, accounts).get(person.id, {})
        self._judge(person, accounts, context, positions, openings, snaps, holdings,
                    {t.id for t in new_txs})
        self.result.transactions += len(new_txs)

    # -- storing ---------------------------------------------------------------------------------------------
    def _alerted(self, employee_ids: Sequence[int]) -> set[tuple[int, str]]:
        """(rule, record) already alerted for these employees: judged no further (the alert stays as it is)."""
        rule_ids = [r.id for r in self.compiled]
        out: set[tuple[int, str]] = set()
        connection = self.session.connection()
        for part in facts.chunks(list(employee_ids), 900):
            out.update((int(r or 0), str(k)) for r, k in connection.execute(
                _alerted_statement(dialect_of(self.session)), {"employees": part, "rules": rule_ids}))
        return out

    def _store(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert the alert rows; the unique (rule, record) key decides: a record alerted before (by an
        evaluation running concurrently, or under another employee) is skipped by the insert itself, and
        only the alerts it created come back. (Records alerted before are mostly not judged at all: see
        ``_alerted``.)"""
        session = self.session
        created = storing.insert_prepared_alerts(session, rows)
        dialect = session.get_bind().dialect
        at = storing.bound(dialect, AlertEvent, "at", utcnow())
        event = {r.id: (f"rule: {r.name}"[:200], storing.bound(dialect, AlertEvent, "detail", {"rule_id": r.id}))
                 for r in self.compiled}
        storing.insert_prepared(session, AlertEvent, storing.EVENT_COLUMNS, [
            (alert_id, at, None, event[rule_id][0], "created", event[rule_id][1])
            for alert_id, _severity, rule_id in created])
        for alert_id, severity, _rule_id in created:
            self.result.alert_ids.append(alert_id)
            if severity == "critical":
                self.result.critical_ids.append(alert_id)


@functools.cache
def _alerted_statement(dialect: str) -> Any:
    return select(Alert.rule_id, Alert.record_key).where(one_of(Alert.employee_id, "employees", dialect),
                                                         one_of(Alert.rule_id, "rules", dialect))


def _first_activity(txs: Iterable[Tx]) -> dict[tuple[int, str], dt.datetime]:
    """(connection, asset) -> the time of its first recorded transaction touching the asset."""
    out: dict[tuple[int, str], dt.datetime] = {}
    for t in txs:
        if t.kind not in facts.TOUCHING_KINDS:
            continue
        key = (t.connection_id, t.asset.upper())
        if key not in out or t.occurred_at < out[key]:
            out[key] = t.occurred_at
    return out


def _unexplained(openings: Sequence[Snapshot], first: dict[tuple[int, str], dt.datetime]) -> list[Snapshot]:
    """New holdings that no recorded transaction explains: a holding that appears after a trade or a
    deposit of the asset on that account is the trade's doing, and the trade is judged itself (one
    alert for one act, not two). What remains: holdings that arrived with no record (an airdrop, a
    venue without history, the first look at an account)."""
    return [s for s in openings if not ((t := first.get((s.connection_id, s.asset.upper()))) and t <= s.valid_from)]


def _current_holdings(rows: Iterable[Snapshot], accounts: dict[int, Account]
                      ) -> dict[int, dict[str, tuple[Decimal, list[Snapshot]]]]:
    """employee -> asset -> (amount held now over every venue and wallet, the observations it sums)."""
    out: dict[int, dict[str, tuple[Decimal, list[Snapshot]]]] = defaultdict(dict)
    for s in rows:
        if s.valid_to is not None or not s.amount:
            continue
        account = accounts.get(s.connection_id)
        if account is None or account.kind == "prediction":
            continue
        held = out[account.employee_id]
        amount, evidence = held.get(s.asset.upper(), (Decimal(0), []))
        held[s.asset.upper()] = (amount + s.amount, [*evidence, s])
    return out


# -- entry points -------------------------------------------------------------------------------------

def evaluate_history(session: Session, valuer: Valuer, *, employee_ids: Sequence[int] | None = None,
                     rule_ids: Sequence[int] | None = None, workers: int = 1) -> EvaluationResult:
    """Every enabled rule (or those named) over the whole history of every employee (or those named).
    Effective dates are respected: an entry matches only records inside its dates. ``workers`` > 1: more
    than one batch of employees is read and judged by that many worker processes (parallel.py)."""
    rules = list_rules(session, enabled_only=True)
    if rule_ids is not None:
        wanted = set(rule_ids)
        rules = [r for r in rules if r.id in wanted]
    evaluation = Evaluation(session, rules, valuer, workers=workers)
    result = evaluation.history(employee_ids)
    now = utcnow()
    if employee_ids is None:
        for rule in rules:
            rule.evaluated_at = now
            rule.evaluated_version = rule.version
    session.flush()
    return result


def evaluate_records(session: Session, valuer: Valuer, connection_id: int, *,
                     transaction_ids: Sequence[int] = (), position_ids: Sequence[int] = (),
                     balance_ids: Sequence[int] = ()) -> EvaluationResult:
    """Every enabled rule over records one connection just stored (by id)."""
    if not (transaction_ids or position_ids or balance_ids):
        return EvaluationResult()
    evaluation = Evaluation(session, list_rules(session, enabled_only=True), valuer)
    result = evaluation.connection(connection_id, transaction_ids=transaction_ids, position_ids=position_ids,
                                   balance_ids=balance_ids)
    session.flush()
    return result


class RuleCache:
    """The enabled rules compiled (their lists indexed), kept by a process between evaluations after syncs
    and compiled again when anything changed: every change to a list, a rule or a group writes a
    ``conduct_changes`` row, so the newest row's id (and their number) says whether they are current."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Any = None
        self._compiled: list[CompiledRule] = []

    @staticmethod
    def key_columns() -> tuple[Any, Any]:
        return (select(func.max(ConductChange.id)).scalar_subquery(),
                select(func.count(ConductChange.id)).scalar_subquery())

    def compiled(self, session: Session, key: Any = None) -> list[CompiledRule]:
        if key is None:
            key = tuple(session.connection().execute(_change_key_statement()).one())
        with self._lock:
            if key == self._key:
                return self._compiled
        compiled = compile_rules(session, list_rules(session, enabled_only=True))
        with self._lock:
            self._key, self._compiled = key, compiled
        return compiled


@functools.cache
def _change_key_statement() -> Any:
    return select(*RuleCache.key_columns())


@functools.cache
def _progress_statement() -> Any:
    """One statement: a connection's newest record ids, its evaluation mark, and the rules' change key.
    Built once (with the connection id as a parameter): it runs after every sync."""
    from appliance.store.models import PredictionPosition, Transaction

    cid: Any = bindparam("cid")
    marks = [select(column).where(EvaluationMark.connection_id == cid).scalar_subquery()
             for column in (EvaluationMark.transaction_id, EvaluationMark.position_id, EvaluationMark.balance_id)]
    tops = [select(func.max(model.id)).where(model.connection_id == cid).scalar_subquery()
            for model in (Transaction, PredictionPosition, BalanceSnapshot)]
    return select(*tops, *marks, *RuleCache.key_columns())


def _progress(session: Session, connection_id: int) -> Any:
    return session.connection().execute(_progress_statement(), {"cid": connection_id}).one()


def has_new_records(session: Session, connection_id: int) -> bool:
    """Whether the connection stored anything since its last evaluation (a read: most syncs store nothing,
    and they should not pay for a write transaction to learn it)."""
    row = _progress(session, connection_id)
    if row[3] is None:
        return True
    return any(int(row[i] or 0) > int(row[i + 3] or 0) for i in range(3))


def evaluate_new(session: Session, valuer: Valuer, connection_id: int, cache: RuleCache | None = None
                 ) -> EvaluationResult:
    """The records one connection stored since its last evaluation (after every sync): the connection's
    evaluation mark says where the last one stopped, and moves in this transaction. A sync that stored
    nothing costs one statement."""
    cache = cache or RuleCache()
    row = _progress(session, connection_id)
    top = [int(v or 0) for v in row[0:3]]
    had_mark = row[3] is not None
    mark = [int(v or 0) for v in row[3:6]]
    if had_mark and all(t <= m for t, m in zip(top, mark, strict=True)):
        return EvaluationResult()
    compiled = cache.compiled(session, tuple(row[6:8]))
    result = EvaluationResult()
    if compiled:
        # -1: nothing new of that kind (not read at all).
        since = cast(tuple[int, int, int], tuple(m if t > m else -1 for t, m in zip(top, mark, strict=True)))
        result = Evaluation(session, [], valuer, compiled).connection(connection_id, since=since)
    # With no rule enabled the mark simply moves on: a rule created later judges the whole history itself.
    values = {"transaction_id": max(top[0], mark[0]), "position_id": max(top[1], mark[1]),
              "balance_id": max(top[2], mark[2]), "updated_at": utcnow()}
    storing.move_mark(session, connection_id, values)
    return result


def evaluation_due(rule: Rule) -> bool:
    return rule.enabled and (rule.evaluated_version != rule.version)


__all__ = ["EvaluationResult", "evaluate_history", "evaluate_new", "evaluate_records"]
