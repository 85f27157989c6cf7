"""Restricted and watch lists: create, change, add and remove entries; every change versioned.

A new restricted list gets its default restricted rule (every employee the list applies to); a watch
list does nothing until a watch rule names it (the UI offers to create one with the list).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.errors import Conflict, Invalid, NotFound
from appliance.rbac.actors import Actor
from appliance.services.rules.common import (
    clean_applies_to,
    clean_name,
    clean_text,
    parse_time,
    record_change,
    time_text,
)
from appliance.services.rules.matching import ENTRY_TYPES, Entry, ListMatcher, normalise
from appliance.store.base import utcnow
from appliance.store.models import ConductList, ListEntry

LIST_KINDS = ("restricted", "watch")
MAX_ENTRIES_PER_CALL = 1000  # api/conduct_schemas.MAX_ENTRIES: larger lists are added in batches
ENTRY_FIELDS = frozenset({"type", "value", "effective_from", "effective_to", "note"})


def _entry_snapshot(entry: ListEntry) -> dict[str, Any]:
    # The note is confidential, but the change log is read by list readers only: it keeps it.
    return {"id": entry.id, "type": entry.type, "value": entry.value, "effective_from": time_text(entry.effective_from),
            "effective_to": time_text(entry.effective_to), "note": entry.note}


def _clean_entry(raw: Any, index: int | None, venues: frozenset[str] | None) -> dict[str, Any]:
    where = f"entries[{index}]" if index is not None else "entry"
    if not isinstance(raw, dict):
        raise Invalid(f"{where} must be an object with type and value", field=where)
    unknown = sorted(set(raw) - ENTRY_FIELDS)
    if unknown:
        raise Invalid(f"{where} has unknown field(s) {', '.join(unknown)} ({', '.join(sorted(ENTRY_FIELDS))})",
                      field=where)
    entry_type = raw.get("type")
    if entry_type not in ENTRY_TYPES:
        raise Invalid(f"{where}.type must be one of {', '.join(ENTRY_TYPES)}", field=f"{where}.type")
    value = raw.get("value")
    if not isinstance(value, str):
        raise Invalid(f"{where}.value is required (text)", field=f"{where}.value")
    try:
        shown, key = normalise(entry_type, value, venues)
    except Invalid as exc:
        raise Invalid(f"{where}: {exc.message}", field=f"{where}.value") from None
    start = parse_time(raw.get("effective_from"), f"{where}.effective_from")
    end = parse_time(raw.get("effective_to"), f"{where}.effective_to", end_of_day=True)
    if start is not None and end is not None and end <= start:
        raise Invalid(f"{where}: effective_to must be after effective_from", field=f"{where}.effective_to")
    note = clean_text(raw.get("note"), f"{where}.note", 2000)
    return {"type": entry_type, "value": shown[:500], "match_key": key[:500], "effective_from": start,
            "effective_to": end, "note": note}


def create(session: Session, actor: Actor, *, name: Any, kind: Any, entries: Any = None, description: Any = "",
           applies_to: Any = None, venues: frozenset[str] | None = None) -> ConductList:
    clean = clean_name(name)
    if kind not in LIST_KINDS:
        raise Invalid("kind must be restricted or watch", field="kind")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise Invalid("entries must be a list of {type, value, effective_from?, effective_to?, note?}",
                      field="entries")
    if len(entries) > MAX_ENTRIES_PER_CALL:
        raise Invalid(f"at most {MAX_ENTRIES_PER_CALL} entries per request", field="entries")
    cleaned = [_clean_entry(e, i, venues) for i, e in enumerate(entries)]
    audience = clean_applies_to(session, applies_to)
    if session.execute(select(ConductList.id).where(ConductList.name == clean)).first():
        raise Conflict(f"a list named {clean!r} already exists")
    row = ConductList(name=clean, kind=kind, description=clean_text(description, "description", 2000),
                      applies_to=audience, created_by=actor.user_id, updated_by=actor.user_id)
    session.add(row)
    session.flush()
    added = [ListEntry(list_id=row.id, added_by=actor.user_id, **c) for c in cleaned]
    session.add_all(added)
    session.flush()
    record_change(session, actor, "list", row.id, 1, "created", {
        "name": row.name, "kind": row.kind, "description": row.description, "applies_to": audience,
        "entries": [_entry_snapshot(e) for e in added]})
    session.flush()
    return row


def get(session: Session, list_id: int) -> ConductList:
    row = session.get(ConductList, list_id)
    if row is None:
        raise NotFound("not found")
    return row


def list_lists(session: Session) -> list[ConductList]:
    return list(session.execute(select(ConductList).order_by(ConductList.kind, ConductList.name)).scalars())


def entries(session: Session, list_id: int, *, include_removed: bool = False) -> list[ListEntry]:
    stmt = select(ListEntry).where(ListEntry.list_id == list_id).order_by(ListEntry.id)
    if not include_removed:
        stmt = stmt.where(ListEntry.removed_at.is_(None))
    return list(session.execute(stmt).scalars())


def _bump(row: ConductList, actor: Actor) -> int:
    row.version += 1
    row.updated_at = utcnow()
    row.updated_by = actor.user_id
    return row.version


def update(session: Session, actor: Actor, list_id: int, *, name: Any = None, description: Any = None,
           applies_to: Any = None) -> ConductList:
    row = get(session, list_id)
    before = {"name": row.name, "description": row.description, "applies_to": row.applies_to}
    if name is not None:
        clean = clean_name(name)
        if clean != row.name and session.execute(select(ConductList.id).where(ConductList.name == clean)).first():
            raise Conflict(f"a list named {clean!r} already exists")
        row.name = clean
    if description is not None:
        row.description = clean_text(description, "description", 2000)
    if applies_to is not None:
        row.applies_to = clean_applies_to(session, applies_to)
    after = {"name": row.name, "description": row.description, "applies_to": row.applies_to}
    if after != before:
        record_change(session, actor, "list", row.id, _bump(row, actor), "updated", {"before": before, "after": after})
    session.flush()
    return row


def add_entries(session: Session, actor: Actor, list_id: int, raw_entries: Any,
                venues: frozenset[str] | None = None) -> list[ListEntry]:
    row = get(session, list_id)
    if not isinstance(raw_entries, list) or not raw_entries:
        raise Invalid("entries must be a non-empty list of {type, value, effective_from?, effective_to?, note?}",
                      field="entries")
    if len(raw_entries) > MAX_ENTRIES_PER_CALL:
        raise Invalid(f"at most {MAX_ENTRIES_PER_CALL} entries per request", field="entries")
    cleaned = [_clean_entry(e, i, venues) for i, e in enumerate(raw_entries)]
    added = [ListEntry(list_id=row.id, added_by=actor.user_id, **c) for c in cleaned]
    session.add_all(added)
    session.flush()
    record_change(session, actor, "list", row.id, _bump(row, actor), "entries_added",
                  {"entries": [_entry_snapshot(e) for e in added]})
    session.flush()
    return added


def _entry(session: Session, list_id: int, entry_id: int) -> ListEntry:
    entry = session.get(ListEntry, entry_id)
    if entry is None or entry.list_id != list_id or entry.removed_at is not None:
        raise NotFound("not found")
    return entry


def change_entry(session: Session, actor: Actor, list_id: int, entry_id: int, changes: dict[str, Any]) -> ListEntry:
    """Change an entry's dates or note (its type and value identify it: to change those, remove it and
    add a new one, so the alerts it raised keep naming what it was)."""
    row = get(session, list_id)
    entry = _entry(session, list_id, entry_id)
    unknown = sorted(set(changes) - {"effective_from", "effective_to", "note"})
    if unknown:
        raise Invalid(f"only effective_from, effective_to and note can change (not {', '.join(unknown)}); "
                      "remove the entry and add a new one instead", field=unknown[0])
    before = _entry_snapshot(entry)
    if "effective_from" in changes:
        entry.effective_from = parse_time(changes["effective_from"], "effective_from")
    if "effective_to" in changes:
        entry.effective_to = parse_time(changes["effective_to"], "effective_to", end_of_day=True)
    if entry.effective_from and entry.effective_to and entry.effective_to <= entry.effective_from:
        raise Invalid("effective_to must be after effective_from", field="effective_to")
    if "note" in changes:
        entry.note = clean_text(changes["note"], "note", 2000)
    after = _entry_snapshot(entry)
    if after != before:
        record_change(session, actor, "list", row.id, _bump(row, actor), "entry_changed",
                      {"before": before, "after": after})
    session.flush()
    return entry


def remove_entry(session: Session, actor: Actor, list_id: int, entry_id: int) -> ListEntry:
    """The entry stops matching from now on; it stays on record with the alerts it raised."""
    row = get(session, list_id)
    entry = _entry(session, list_id, entry_id)
    entry.removed_at = utcnow()
    entry.removed_by = actor.user_id
    record_change(session, actor, "list", row.id, _bump(row, actor), "entry_removed", {"entry": _entry_snapshot(entry)})
    session.flush()
    return entry


def matchers(session: Session, list_ids: Sequence[int]) -> dict[int, ListMatcher]:
    """The live entries of these lists, indexed for matching."""
    if not list_ids:
        return {}
    found: dict[int, list[Entry]] = {i: [] for i in list_ids}
    for e in session.execute(select(
            ListEntry.id, ListEntry.list_id, ListEntry.type, ListEntry.match_key, ListEntry.value,
            ListEntry.effective_from, ListEntry.effective_to).where(
            ListEntry.list_id.in_(list(list_ids)), ListEntry.removed_at.is_(None))):
        found[e[1]].append(Entry(*e))
    return {list_id: ListMatcher.build(list_id, items) for list_id, items in found.items()}
