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
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
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


def _sort_key(sort: str) -> ColumnElement[Any]:
    name = sort.lstrip("-")
    if name == "name":
        return func.lower(Employee.name)
    if name == "department":
        return func.lower(Employee.department)
    if name == "status":
        return Employee.__table__.c.status
    return Employee.__table__.c.created_at


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filters(session: Session, search: Search, reader: Reader) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    q = " ".join((search.q or "").split())
    if q:
        pattern = _like(q)
        where.append(or_(Employee.name.ilike(pattern, escape="\\"), Employee.email.ilike(pattern, escape="\\"),
                         Employee.department.ilike(pattern, escape="\\")))
    if search.status:
        where.append(Employee.status == search.status)
    if search.red:
        where.append(_among(_red_employees(), search.red))
    if search.alerts:
        if not reader.alerts:
            raise Forbidden("filtering by open alerts needs the alerts:read permission")
        open_ = select(Alert.employee_id).where(Alert.status.in_(OPEN_ALERT_STATUSES), Alert.employee_id.is_not(None))
        where.append(_among(open_, search.alerts))
    if search.group is not None:
        if not reader.groups:
            raise Forbidden("filtering by group needs the groups:read permission")
        if session.get(EmployeeGroup, search.group) is None:
            raise Invalid(f"group: there is no group {search.group}", field="group")
        where.append(Employee.id.in_(select(EmployeeGroupMember.employee_id)
                                     .where(EmployeeGroupMember.group_id == search.group)))
    if search.access_person:
        where.append(Employee.access_person.is_(search.access_person == "yes"))
    return where


def _red_employees() -> Select[Any]:
    """Employees with a red connection, read through the connections' status index (a few hundred rows)."""
    return select(Connection.employee_id).where(Connection.status.in_(RED_STATUSES))


def _among(ids: Select[Any], answer: YesNo) -> ColumnElement[bool]:
    return Employee.id.in_(ids) if answer == "yes" else Employee.id.not_in(ids)


def _order(sort: str) -> list[Any]:
    key = _sort_key(sort)
    if sort.startswith("-"):
        return [key.desc(), Employee.id.desc()]
    return [key.asc(), Employee.id.asc()]


def count(session: Session, search: Search, reader: Reader) -> int:
    """Employees matching ``search``."""
    where = _filters(session, search, reader)
    return session.execute(select(func.count()).select_from(Employee).where(*where)).scalar_one()


def red_count(session: Session) -> int:
    """Employees with a red connection: the banner above the list, counted from the red connections alone."""
    return session.execute(select(func.count(func.distinct(Connection.employee_id)))
                           .where(Connection.status.in_(RED_STATUSES))).scalar_one()


def list_page(session: Session, search: Search, reader: Reader, *, page: int = 1, size: int = PAGE_SIZE,
              after: str | None = None) -> Page:
    """Page ``page`` (from 1) of the employees matching ``search``; a page past the last is empty. ``after``: the
    ``next_cursor`` of the page before, which reads this page from where that one stopped instead of counting
    ``page - 1`` pages of the index again (a cursor of another sort is refused)."""
    where = _filters(session, search, reader)
    total = session.execute(select(func.count()).select_from(Employee).where(*where)).scalar_one()
    stmt = select(Employee.id, _sort_key(search.sort)).where(*where).order_by(*_order(search.sort)).limit(size)
    if after is not None:
        stmt = stmt.where(_after(search.sort, *decode_cursor(after, search.sort)))
    else:
        stmt = stmt.offset((page - 1) * size)
    found = list(session.execute(stmt).all())
    next_cursor = encode_cursor(search.sort, found[-1][1], found[-1][0]) if found and page * size < total else None
    return Page(_details(session, _employees(session, [i for i, _k in found]), reader), total, page, size,
                next_cursor=next_cursor)


def list_after(session: Session, search: Search, reader: Reader, *, cursor: str | None, limit: int) -> Page:
    """Up to ``limit`` employees matching ``search`` after ``cursor`` (None: from the start), with the cursor of
    the next batch (None after the last)."""
    where = _filters(session, search, reader)
    total = session.execute(select(func.count()).select_from(Employee).where(*where)).scalar_one()
    if cursor is not None:
        where.append(_after(search.sort, *decode_cursor(cursor, search.sort)))
    stmt = select(Employee.id, _sort_key(search.sort)).where(*where).order_by(*_order(search.sort)).limit(limit + 1)
    found = list(session.execute(stmt).all())
    more = len(found) > limit
    found = found[:limit]
    next_cursor = encode_cursor(search.sort, found[-1][1], found[-1][0]) if more and found else None
    return Page(_details(session, _employees(session, [i for i, _k in found]), reader), total, size=limit,
                next_cursor=next_cursor)


def _employees(session: Session, ids: list[int]) -> list[Employee]:
    """The rows of a page's ids, in the ids' order (the page was ordered and cut on the index alone)."""
    if not ids:
        return []
    rows = {e.id: e for e in session.execute(select(Employee).where(Employee.id.in_(ids))).scalars()}
    return [rows[i] for i in ids if i in rows]


def _after(sort: str, key: Any, last_id: int) -> ColumnElement[bool]:
    column = _sort_key(sort)
    if sort.startswith("-"):
        return or_(column < key, and_(column == key, Employee.id < last_id))
    return or_(column > key, and_(column == key, Employee.id > last_id))


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


def _details(session: Session, employees: list[Employee], reader: Reader) -> list[ListedEmployee]:
    """Connections' health, open alerts and value of the page's employees only."""
    ids = [e.id for e in employees]
    if not ids:
        return []
    statuses: dict[int, dict[str, int]] = defaultdict(dict)
    for employee_id, status, n in session.execute(
            select(Connection.employee_id, Connection.status, func.count()).where(Connection.employee_id.in_(ids))
            .group_by(Connection.employee_id, Connection.status)):
        statuses[employee_id][status] = n
    alerts: dict[int, int] = {}
    if reader.alerts:
        for whose, n in session.execute(
                select(Alert.employee_id, func.count()).where(Alert.employee_id.in_(ids),
                                                              Alert.status.in_(OPEN_ALERT_STATUSES))
                .group_by(Alert.employee_id)):
            if whose is not None:
                alerts[whose] = n
    values: dict[int, EmployeeValue] = {}
    if reader.values:
        values = {v.employee_id: v for v in session.execute(select(EmployeeValue).where(
            EmployeeValue.employee_id.in_(ids), EmployeeValue.currency == reader.values)).scalars()}
    out = []
    for e in employees:
        held = values.get(e.id)
        out.append(ListedEmployee(
            e, sum(statuses[e.id].values()), statuses[e.id],
            open_alerts=alerts.get(e.id, 0) if reader.alerts else None,
            value=None if held is None else held.balances + (held.positions if reader.positions else 0),
            unpriced=0 if held is None else held.balances_unpriced + (
                held.positions_unpriced if reader.positions else 0),
            value_as_of=None if held is None else held.as_of))
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
