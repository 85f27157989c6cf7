"""What the Roster page shows: each configured source's state (last run, its summary, whether it was ever
applied, the changes awaiting review or held back) and the HR file drops waiting, processed and rejected."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from appliance.services.context import Appliance
from appliance.services.roster.sync import configured_sources
from appliance.store.models import RosterState

MAX_LISTED = 50  # files per folder on the page, newest first


@dataclass(frozen=True)
class DropFile:
    name: str
    size: int
    modified: dt.datetime


@dataclass(frozen=True)
class SourceState:
    source: str
    last_run_at: dt.datetime | None = None
    last_summary: str = ""
    first_applied_at: dt.datetime | None = None
    reviewed_at: dt.datetime | None = None
    pending: list[dict[str, object]] = field(default_factory=list)

    @property
    def held_back(self) -> bool:
        return self.last_summary.startswith("held back")


@dataclass(frozen=True)
class Drops:
    folder: str
    waiting: list[DropFile]
    processed: list[DropFile]
    rejected: list[DropFile]
    problem: str = ""


def _listed(folder: Path) -> list[DropFile]:
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file()]
    files.sort(key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    return [DropFile(p.name, p.stat().st_size, dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC))
            for p in files[:MAX_LISTED]]


def sources(session: Session, app: Appliance) -> list[SourceState]:
    out = []
    for source in configured_sources(app):
        state = session.get(RosterState, source)
        if state is None:
            out.append(SourceState(source))
            continue
        out.append(SourceState(source, state.last_run_at, state.last_summary, state.first_applied_at,
                               state.reviewed_at, [p for p in (state.pending or []) if isinstance(p, dict)]))
    return out


def drops(app: Appliance) -> Drops | None:
    """The HR drop folder's files (None when roster.files.directory is not set)."""
    directory = app.settings.roster.files.directory
    if not directory:
        return None
    folder = Path(directory)
    if not folder.is_dir():
        return Drops(directory, [], [], [], problem=f"{directory} does not exist or is not a directory")
    waiting = [f for f in _listed(folder) if f.name.lower().endswith((".csv", ".json"))]
    return Drops(directory, waiting, _listed(folder / "processed"), _listed(folder / "rejected"))


__all__ = ["DropFile", "Drops", "SourceState", "drops", "sources"]
