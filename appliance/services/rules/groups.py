"""Named employee groups managed in the app (besides the HR department): what lists and rules apply to."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from appliance.errors import Conflict, Invalid, NotFound
from appliance.rbac.actors import Actor
from appliance.services.rules.common import clean_name, clean_text, record_change
from appliance.store.models import Employee, EmployeeGroup, EmployeeGroupMember
from appliance.store.params import dialect_of, one_of


def create(session: Session, actor: Actor, *, name: Any, description: Any = "",
           employee_ids: Iterable[int] = ()) -> EmployeeGroup:
    clean = clean_name(name, limit=100)
    if session.execute(select(EmployeeGroup.id).where(EmployeeGroup.name == clean)).first():
        raise Conflict(f"a group named {clean!r} already exists")
    group = EmployeeGroup(name=clean, description=clean_text(description, "description", 500),
                          created_by=actor.user_id)
    session.add(group)
    session.flush()
    record_change(session, actor, "group", group.id, 1, "created", {"name": clean,
                                                                    "description": group.description})
    ids = list(employee_ids)
    if ids:
        add_members(session, actor, group.id, ids)
    return group


def get(session: Session, group_id: int) -> EmployeeGroup:
    group = session.get(EmployeeGroup, group_id)
    if group is None:
        raise NotFound("not found")
    return group


def list_groups(session: Session) -> list[tuple[EmployeeGroup, int]]:
    counts = dict(session.execute(select(EmployeeGroupMember.group_id, func.count()).group_by(
        EmployeeGroupMember.group_id)).all())
    groups = session.execute(select(EmployeeGroup).order_by(EmployeeGroup.name)).scalars()
    return [(g, int(counts.get(g.id, 0))) for g in groups]


def update(session: Session, actor: Actor, group_id: int, *, name: Any = None, description: Any = None
           ) -> EmployeeGroup:
    group = get(session, group_id)
    before = {"name": group.name, "description": group.description}
    if name is not None:
        clean = clean_name(name, limit=100)
        if clean != group.name and session.execute(select(EmployeeGroup.id).where(EmployeeGroup.name == clean)).first():
            raise Conflict(f"a group named {clean!r} already exists")
        group.name = clean
    if description is not None:
        group.description = clean_text(description, "description", 500)
    after = {"name": group.name, "description": group.description}
    if after != before:
        group.version += 1
        record_change(session, actor, "group", group.id, group.version, "updated", {"before": before, "after": after})
    session.flush()
    return group


def groups_for(session: Session, employee_id: int) -> list[EmployeeGroup]:
    """The groups one employee belongs to, by name (the employee page), without counting every group's members."""
    return list(session.execute(select(EmployeeGroup).join(
        EmployeeGroupMember, EmployeeGroupMember.group_id == EmployeeGroup.id).where(
        EmployeeGroupMember.employee_id == employee_id).order_by(EmployeeGroup.name)).scalars())


def members(session: Session, group_id: int) -> list[Employee]:
    return list(session.execute(select(Employee).join(
        EmployeeGroupMember, EmployeeGroupMember.employee_id == Employee.id).where(
        EmployeeGroupMember.group_id == group_id).order_by(Employee.name, Employee.id)).scalars())


def add_members(session: Session, actor: Actor, group_id: int, employee_ids: Iterable[Any]) -> list[int]:
    """Add employees; returns the ids actually added (members already in stay as they are)."""
    group = get(session, group_id)
    wanted: list[int] = []
    for value in employee_ids:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise Invalid("employee_ids must be a list of employee ids", field="employee_ids")
        wanted.append(value)
    if not wanted:
        raise Invalid("name at least one employee", field="employee_ids")
    known = set(session.execute(select(Employee.id).where(Employee.id.in_(wanted))).scalars())
    missing = sorted(set(wanted) - known)
    if missing:
        raise Invalid(f"no employee with id {', '.join(map(str, missing[:10]))}", field="employee_ids")
    present = set(session.execute(select(EmployeeGroupMember.employee_id).where(
        EmployeeGroupMember.group_id == group.id, EmployeeGroupMember.employee_id.in_(wanted))).scalars())
    added = sorted(set(wanted) - present)
    for employee_id in added:
        session.add(EmployeeGroupMember(group_id=group.id, employee_id=employee_id, added_by=actor.user_id))
    if added:
        group.version += 1
        record_change(session, actor, "group", group.id, group.version, "members_added", {"employee_ids": added})
    session.flush()
    return added


def remove_member(session: Session, actor: Actor, group_id: int, employee_id: int) -> None:
    group = get(session, group_id)
    result = session.execute(delete(EmployeeGroupMember).where(
        EmployeeGroupMember.group_id == group.id, EmployeeGroupMember.employee_id == employee_id))
    if not getattr(result, "rowcount", 0):
        raise NotFound("not found")
    group.version += 1
    record_change(session, actor, "group", group.id, group.version, "member_removed", {"employee_id": employee_id})
    session.flush()


def groups_of(session: Session, employee_ids: Iterable[int]) -> dict[int, frozenset[int]]:
    """employee id -> the groups they belong to."""
    ids = list(employee_ids)
    out: dict[int, set[int]] = {}
    for start in range(0, len(ids), 900):
        for group_id, employee_id in session.connection().execute(_members_statement(dialect_of(session)),
                                                                  {"ids": ids[start:start + 900]}):
            out.setdefault(employee_id, set()).add(group_id)
    return {k: frozenset(v) for k, v in out.items()}


@functools.cache
def _members_statement(dialect: str) -> Any:
    """Built once (it runs after every sync that stored something)."""
    return select(EmployeeGroupMember.group_id, EmployeeGroupMember.employee_id).where(
        one_of(EmployeeGroupMember.employee_id, "ids", dialect))
