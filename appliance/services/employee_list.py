"""The employees list: search, filters, sort and paging done by the database, so a page costs about the same at
10,000 employees as at 40 (bench/bench_dashboard.py, docs/PERFORMANCE.md).

One query selects the ids of the page's employees (matching ``q`` in name, e-mail or department, case-insensitive;
filtered by status, red connection, open alerts, group), in the order of an index (migration 0027: lower(name),
lower(department), status, created_at, each then id); a count gives the number of pages; then only the page's
employees are read, with their connections' health, open alerts and value. The red-connection, open-alert and group
filters read the few employees concerned from their own tables' indexes (ids IN ...) rather than probing every
employee's connections and alerts. Two ways to page:

- ``page`` (the UI: "page 3 of 12", any page directly), an offset over the index alone (ids, no rows), and a
  cursor for the next page, so following "Next" reads from where the last page stopped;
- ``cursor`` (the API: stable while employees are added), the last row's sort key and id, opaque to callers.

Open alerts, values and groups are details the caller's role may not cover: the route says what the actor may see
(``Reader``) and the service neither filters nor shows by what it may not.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, cast

from sqlalchemy import BindParameter, ColumnElement, Row, Select, Table, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from appliance.errors import Forbidden, Invalid
from appliance.rbac.actors import Actor
from appliance.services.employees import RED_STATUSES, EmployeeRow
from appliance.store.models import (
    Alert,
    Connection,
    Employee,
    EmployeeGroup,
    EmployeeGroupMember,
    EmployeeValue,
    User,
)

OPEN_ALERT_STATUSES = ("open", "assigned")
PAGE_SIZE = 50
Sort = Literal["name", "-name", "department", "-department", "status", "-status", "added", "-added"]
SORTS: tuple[str, ...] = ("name", "-name", "department", "-department", "status", "-status", "added", "-added")
YesNo = Literal["yes", "no"]


@dataclass(frozen=True)
class Reader:
    """What the caller may see besides the employees themselves."""

    alerts: bool = False  # open alert counts, and the filter on them
    values: str | None = None  # the currency of the value column, when the caller may see everyone's balances
    positions: bool = False  # the value includes prediction positions (the caller may see everyone's)
    groups: bool = False  # the group filter (groups:read)


def reader_for(actor: Actor, currency: str) -> Reader:
    """What ``actor`` sees in the list: open alert counts with alerts:read; values with balances:read over
    everyone (a flagged scope would show some rows' values and not others', which reads as zero)."""
    balances = actor.scope_for("balances:read") == "all"
    return Reader(alerts=actor.can("alerts:read"), values=currency if balances else None,
                  positions=balances and actor.scope_for("predictions:read") == "all", groups=actor.can("groups:read"))


@dataclass(frozen=True)
class Search:
    q: str | None = None
    status: Literal["active", "offboarded"] | None = None
    red: YesNo | None = None
    alerts: YesNo | None = None
    group: int | None = None  # an EmployeeGroup's id: its members only
    sort: Sort = "name"
    access_person: YesNo | None = None


@dataclass(frozen=True, slots=True)
class ListedPerson:
    """An employee as the list shows them: read as plain columns, not as a model object (a page of 50 is read on
    every request to the list; the ORM's identity map and change tracking are for editing)."""

    id: int
    name: str
    email: str
    department: str
    external_id: str | None
    status: str
    created_at: dt.datetime
    offboarded_at: dt.datetime | None
    access_person: bool
    access_person_since: dt.date | None


@dataclass(frozen=True)
class ListedEmployee(EmployeeRow):
    open_alerts: int | None = None  # None: the caller may not see alerts
    value: Decimal | None = None  # None: not shown to the caller, or never valued
    unpriced: int = 0
    value_as_of: dt.datetime | None = None


@dataclass
class Page:
    rows: list[ListedEmployee]
    total: int  # employees matching the search, on every page
    page: int = 1
    size: int = PAGE_SIZE
    next_cursor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


# The page's reads, built once: Core statements over the tables, the page's ids bound as one expanding parameter.
_EMPLOYEES = cast(Table, Employee.__table__)
_CONNECTIONS = cast(Table, Connection.__table__)
_ALERTS = cast(Table, Alert.__table__)
_VALUE_TABLE = cast(Table, EmployeeValue.__table__)
_MEMBERS = cast(Table, EmployeeGroupMember.__table__)
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_PERSON = tuple(_EMPLOYEES.c[name] for name in ListedPerson.__slots__)
_PERSON_FIELDS = len(_PERSON)
# What the reader may see beside the person: the value in the base currency (a left join on its primary key) and
# the open alerts (a count through ix_alerts_employee_status for each listed employee).
_VALUED = _EMPLOYEES.outerjoin(_VALUE_TABLE, and_(_VALUE_TABLE.c.employee_id == _EMPLOYEES.c.id,
                                                  _VALUE_TABLE.c.currency == bindparam("currency")))
_VALUE_COLUMNS = (_VALUE_TABLE.c.balances, _VALUE_TABLE.c.positions, _VALUE_TABLE.c.balances_unpriced,
                  _VALUE_TABLE.c.positions_unpriced, _VALUE_TABLE.c.as_of)
_OPEN_ALERTS = (select(func.count()).where(_ALERTS.c.employee_id == _EMPLOYEES.c.id,
                                           _ALERTS.c.status.in_(OPEN_ALERT_STATUSES))
                .correlate(_EMPLOYEES).scalar_subquery().label("open_alerts"))
_STATUSES = (select(_CONNECTIONS.c.employee_id, _CONNECTIONS.c.status, func.count())
             .where(_CONNECTIONS.c.employee_id.in_(_IDS)).group_by(_CONNECTIONS.c.employee_id, _CONNECTIONS.c.status))


def _listed(reader: Reader, *extra: ColumnElement[Any]) -> Select[Any]:
    """The listed employees' columns and what ``reader`` may see of them, in one statement."""
    columns: list[ColumnElement[Any]] = [*_PERSON, *extra]
    if reader.alerts:
        columns.append(_OPEN_ALERTS)
    if reader.values:
        return select(*columns, *_VALUE_COLUMNS).select_from(_VALUED)
    return select(*columns)


def _sort_key(sort: str) -> ColumnElement[Any]:
    name = sort.lstrip("-")
    if name == "name":
        return func.lower(_EMPLOYEES.c.name)
    if name == "department":
        return func.lower(_EMPLOYEES.c.department)
    if name == "status":
        return _EMPLOYEES.c.status
    return _EMPLOYEES.c.created_at


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filters(session: Session, search: Search, reader: Reader) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    q = " ".join((search.q or "").split())
    if q:
        pattern = _like(q)
        where.append(or_(*(_EMPLOYEES.c[name].ilike(pattern, escape="\\") for name in ("name", "email", "department"))))
    if search.status:
        where.append(_EMPLOYEES.c.status == search.status)
    if search.red:
        where.append(_among(_red_employees(), search.red))
    if search.alerts:
        if not reader.alerts:
            raise Forbidden("filtering by open alerts needs the alerts:read permission")
        open_ = select(_ALERTS.c.employee_id).where(_ALERTS.c.status.in_(OPEN_ALERT_STATUSES),
                                                    _ALERTS.c.employee_id.is_not(None))
        where.append(_among(open_, search.alerts))
    if search.group is not None:
        if not reader.groups:
            raise Forbidden("filtering by group needs the groups:read permission")
        if session.get(EmployeeGroup, search.group) is None:
            raise Invalid(f"group: there is no group {search.group}", field="group")
        where.append(_EMPLOYEES.c.id.in_(select(_MEMBERS.c.employee_id).where(_MEMBERS.c.group_id == search.group)))
    if search.access_person:
        where.append(_EMPLOYEES.c.access_person.is_(search.access_person == "yes"))
    return where


def _red_employees() -> Select[Any]:
    """Employees with a red connection, read through the connections' status index (a few hundred rows)."""
    return select(_CONNECTIONS.c.employee_id).where(_CONNECTIONS.c.status.in_(RED_STATUSES))


def _among(ids: Select[Any], answer: YesNo) -> ColumnElement[bool]:
    return _EMPLOYEES.c.id.in_(ids) if answer == "yes" else _EMPLOYEES.c.id.not_in(ids)


def _order(sort: str) -> list[Any]:
    key = _sort_key(sort)
    if sort.startswith("-"):
        return [key.desc(), _EMPLOYEES.c.id.desc()]
    return [key.asc(), _EMPLOYEES.c.id.asc()]


def count(session: Session, search: Search, reader: Reader) -> int:
    """Employees matching ``search``."""
    return _count(session, _filters(session, search, reader))


def _count(session: Session, where: list[ColumnElement[bool]]) -> int:
    return session.execute(select(func.count()).select_from(_EMPLOYEES).where(*where)).scalar_one()


def red_count(session: Session) -> int:
    """Employees with a red connection: the banner above the list, counted from the red connections alone."""
    return session.execute(select(func.count(func.distinct(_CONNECTIONS.c.employee_id)))
                           .where(_CONNECTIONS.c.status.in_(RED_STATUSES))).scalar_one()


def list_page(session: Session, search: Search, reader: Reader, *, page: int = 1, size: int = PAGE_SIZE,
              after: str | None = None) -> Page:
    """Page ``page`` (from 1) of the employees matching ``search``; a page past the last is empty. ``after``: the
    ``next_cursor`` of the page before, which reads this page from where that one stopped instead of counting
    ``page - 1`` pages of the index again (a cursor of another sort is refused)."""
    where = _filters(session, search, reader)
    total = _count(session, where)
    stmt = select(_EMPLOYEES.c.id, _sort_key(search.sort)).where(*where).order_by(*_order(search.sort)).limit(size)
    if after is not None:
        stmt = stmt.where(_after(search.sort, *decode_cursor(after, search.sort)))
    else:
        stmt = stmt.offset((page - 1) * size)
    found = list(session.execute(stmt).all())
    next_cursor = encode_cursor(search.sort, found[-1][1], found[-1][0]) if found and page * size < total else None
    ids = [i for i, _k in found]
    rows = {row.id: row for row in session.execute(_listed(reader).where(_EMPLOYEES.c.id.in_(_IDS)),
                                                    {"ids": ids, "currency": reader.values})} if ids else {}
    return Page(_details(session, [rows[i] for i in ids if i in rows], reader), total, page, size,
                next_cursor=next_cursor)


def list_after(session: Session, search: Search, reader: Reader, *, cursor: str | None, limit: int) -> Page:
    """Up to ``limit`` employees matching ``search`` after ``cursor`` (None: from the start), with the cursor of
    the next batch (None after the last): the rows in the order of the sort's index, one more than asked for to
    know whether more follow, and the count only when they do (or when a cursor starts part-way)."""
    where = _filters(session, search, reader)
    batch = where.copy()
    if cursor is not None:
        batch.append(_after(search.sort, *decode_cursor(cursor, search.sort)))
    key = _sort_key(search.sort).label("sort_key")
    rows = list(session.execute(_listed(reader, key).where(*batch).order_by(*_order(search.sort)).limit(limit + 1),
                                {"currency": reader.values}))
    more = len(rows) > limit
    rows = rows[:limit]
    total = len(rows) if cursor is None and not more else _count(session, where)
    next_cursor = encode_cursor(search.sort, rows[-1].sort_key, rows[-1].id) if more and rows else None
    return Page(_details(session, rows, reader), total, size=limit, next_cursor=next_cursor)


def _after(sort: str, key: Any, last_id: int) -> ColumnElement[bool]:
    column = _sort_key(sort)
    if sort.startswith("-"):
        return or_(column < key, and_(column == key, _EMPLOYEES.c.id < last_id))
    return or_(column > key, and_(column == key, _EMPLOYEES.c.id > last_id))


def encode_cursor(sort: str, key: Any, last_id: int) -> str:
    if isinstance(key, dt.datetime):
        key = {"t": key.astimezone(dt.UTC).isoformat()}
    raw = json.dumps({"s": sort, "k": key, "i": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, int]:
    """The sort key and id a cursor carries; a cursor that is not one of ours, or was made for another sort, is
    refused (``Invalid``) rather than guessed at."""
    bad = Invalid("cursor: not a cursor this list gave (start again without one)", field="cursor")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or set(data) != {"s", "k", "i"}:
        raise bad
    if data["s"] != sort:
        raise Invalid(f"cursor: made for sort={data['s']!s:.20}, not sort={sort}; start again without one",
                      field="cursor")
    last_id, key = data["i"], data["k"]
    if isinstance(last_id, bool) or not isinstance(last_id, int) or not 0 < last_id < 2**63:
        raise bad
    if sort.lstrip("-") == "added":
        try:
            key = dt.datetime.fromisoformat(key["t"]) if isinstance(key, dict) and isinstance(key.get("t"), str) \
                else None
        except ValueError:
            key = None
        if key is None or key.tzinfo is None:
            raise bad
    elif not isinstance(key, str) or len(key) > 200:
        raise bad
    return key, last_id


def _details(session: Session, rows: list[Row[Any]], reader: Reader) -> list[ListedEmployee]:
    """The page's rows (:func:`_listed`) with their connections' health: one count per employee and status."""
    if not rows:
        return []
    statuses: dict[int, dict[str, int]] = defaultdict(dict)
    for employee_id, status, n in session.execute(_STATUSES, {"ids": [row.id for row in rows]}):
        statuses[employee_id][status] = n
    out = []
    for row in rows:
        valued = reader.values is not None and row.as_of is not None
        out.append(ListedEmployee(
            ListedPerson(*row[:_PERSON_FIELDS]), sum(statuses[row.id].values()), statuses[row.id],
            open_alerts=row.open_alerts if reader.alerts else None,
            value=row.balances + (row.positions if reader.positions else 0) if valued else None,
            unpriced=row.balances_unpriced + (row.positions_unpriced if reader.positions else 0) if valued else 0,
            value_as_of=row.as_of if valued else None))
    return out


def employee_names(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """Names for pages that list records by employee id (alerts, positions): one query for a page's ids."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {i: name for i, name in session.execute(select(Employee.id, Employee.name).where(Employee.id.in_(wanted)))}


def group_choices(session: Session) -> list[tuple[int, str]]:
    """The groups the list can be filtered by, by name."""
    return [(i, name) for i, name in session.execute(select(EmployeeGroup.id, EmployeeGroup.name)
                                                     .order_by(EmployeeGroup.name))]


def user_names(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """Usernames for pages that list records by user id (the audit trail)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {i: name for i, name in session.execute(select(User.id, User.username).where(User.id.in_(wanted)))}
