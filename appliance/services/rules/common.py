"""What lists, rules and groups share: who an object applies to, dates as users write them, the
change log that versions them, and the names the UI shows instead of ids."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.errors import Invalid
from appliance.rbac.actors import Actor
from appliance.settings import VENUE_IDS, Settings
from appliance.store.base import utcnow
from appliance.store.models import ConductChange, EmployeeGroup, User

MAX_NAME = 200
MAX_DEPARTMENTS = 200


def clean_name(value: Any, field: str = "name", limit: int = MAX_NAME) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{field} is required (text, up to {limit} characters)", field=field)
    text = " ".join(value.split())
    if len(text) > limit:
        raise Invalid(f"{field} is at most {limit} characters", field=field)
    return text


def clean_text(value: Any, field: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{field} must be text", field=field)
    text = value.strip()
    if len(text) > limit:
        raise Invalid(f"{field} is at most {limit} characters", field=field)
    return text


def parse_time(value: Any, field: str, *, end_of_day: bool = False) -> dt.datetime | None:
    """An ISO 8601 date or date-time (UTC unless it says otherwise). A bare date means the start of that
    day, or with ``end_of_day`` the end of it (an entry "effective to 2026-03-31" covers March 31)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Invalid(f"{field} must be an ISO 8601 date or time, e.g. 2026-01-31 or 2026-01-31T09:30:00Z",
                      field=field)
    text = value.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return start + dt.timedelta(days=1) if end_of_day else start
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{field} must be an ISO 8601 date or time, e.g. 2026-01-31 or 2026-01-31T09:30:00Z "
                      f"(got {text[:40]!r})", field=field) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def time_text(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value is not None else None


def known_venues(settings: Settings) -> frozenset[str]:
    """Every venue id a connection can carry: exchanges and prediction markets, configured EVM chains, Bitcoin."""
    return frozenset(VENUE_IDS) | frozenset(settings.chains.evm) | {"bitcoin"}


# -- who an object applies to ---------------------------------------------------------------------

@dataclass(frozen=True)
class Audience:
    """Departments (matched case-insensitively) and named groups; both empty: every employee."""

    departments: frozenset[str] = frozenset()
    groups: frozenset[int] = frozenset()

    @property
    def everyone(self) -> bool:
        return not self.departments and not self.groups

    def includes(self, department: str, group_ids: Iterable[int]) -> bool:
        if self.everyone:
            return True
        if department and department.casefold() in self.departments:
            return True
        return bool(self.groups.intersection(group_ids))

    @classmethod
    def of(cls, stored: Mapping[str, Any] | None) -> Audience:
        stored = stored or {}
        return cls(frozenset(str(d).casefold() for d in stored.get("departments") or ()),
                   frozenset(int(g) for g in stored.get("groups") or ()))


def clean_applies_to(session: Session, value: Any) -> dict[str, Any]:
    """``{"departments": [...], "groups": [ids or names]}`` -> the stored form (groups as ids, sorted).
    None or {} means every employee."""
    if value is None:
        return {"departments": [], "groups": []}
    if not isinstance(value, dict):
        raise Invalid('applies_to must be an object like {"departments": ["Trading"], "groups": [3]} '
                      "(empty: every employee)", field="applies_to")
    unknown = sorted(set(value) - {"departments", "groups"})
    if unknown:
        raise Invalid(f"applies_to has unknown field(s) {', '.join(unknown)} (departments, groups)",
                      field="applies_to")
    departments = value.get("departments") or []
    groups = value.get("groups") or []
    if not isinstance(departments, list) or not all(isinstance(d, str) and d.strip() for d in departments):
        raise Invalid("applies_to.departments must be a list of department names", field="applies_to.departments")
    if len(departments) > MAX_DEPARTMENTS or any(len(d) > 200 for d in departments):
        raise Invalid("applies_to.departments: at most 200 names of up to 200 characters",
                      field="applies_to.departments")
    if not isinstance(groups, list) or not all(isinstance(g, (int, str)) and not isinstance(g, bool)
                                               for g in groups):
        raise Invalid("applies_to.groups must be a list of group ids or names", field="applies_to.groups")
    found: set[int] = set()
    for ref in groups:
        stmt = select(EmployeeGroup.id)
        stmt = stmt.where(EmployeeGroup.id == ref) if isinstance(ref, int) else stmt.where(
            EmployeeGroup.name == " ".join(ref.split()))
        group_id = session.execute(stmt).scalar_one_or_none()
        if group_id is None:
            raise Invalid(f"applies_to.groups: no group {ref!r}", field="applies_to.groups")
        found.add(int(group_id))
    return {"departments": sorted({" ".join(d.split()) for d in departments}, key=str.casefold),
            "groups": sorted(found)}


def describe_audience(session: Session, stored: Mapping[str, Any] | None) -> str:
    """"every employee", or "department Trading; group Deal team" — names, not ids."""
    audience = stored or {}
    parts = [f"department {d}" for d in audience.get("departments") or ()]
    ids = [int(g) for g in audience.get("groups") or ()]
    if ids:
        names = dict(session.execute(select(EmployeeGroup.id, EmployeeGroup.name).where(
            EmployeeGroup.id.in_(ids))).all())
        parts += [f"group {names.get(g, f'#{g}')}" for g in ids]
    return "; ".join(parts) or "every employee"


# -- versions ---------------------------------------------------------------------------------------

def record_change(session: Session, actor: Actor, subject: str, subject_id: int, version: int, action: str,
                  detail: dict[str, Any]) -> ConductChange:
    change = ConductChange(subject=subject, subject_id=subject_id, version=version, action=action, detail=detail,
                           changed_by=actor.user_id, actor_label=actor.label[:200], changed_at=utcnow())
    session.add(change)
    return change


def history(session: Session, subject: str, subject_id: int) -> list[ConductChange]:
    return list(session.execute(select(ConductChange).where(
        ConductChange.subject == subject, ConductChange.subject_id == subject_id).order_by(
        ConductChange.id)).scalars())


def change_json(change: ConductChange, names: Mapping[int, str]) -> dict[str, Any]:
    return {"version": change.version, "action": change.action, "detail": change.detail,
            "changed_at": time_text(change.changed_at),
            "changed_by": names.get(change.changed_by, change.actor_label) if change.changed_by else
            change.actor_label, "changed_by_id": change.changed_by}


def user_names(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """user id -> the name to show (display name, else user name)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {uid: (display or username) for uid, display, username in session.execute(
        select(User.id, User.display_name, User.username).where(User.id.in_(wanted)))}
