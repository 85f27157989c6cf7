"""One roster run for a source (the CLI's `vigatra roster sync`, the scheduled job) and the CSV import.

The LDAP source reads the directory with its service account; the files source takes the newest export in
``roster.files.directory`` and, once applied, moves it to processed/ (a file refused whole goes to rejected/),
so an export is applied once. A dry run moves nothing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from sqlalchemy.orm import Session

from appliance.errors import Invalid
from appliance.services.context import Appliance
from appliance.services.roster import plan as roster_plan
from appliance.services.roster import sources
from appliance.services.roster.plan import RosterRecord, RosterReport
from appliance.store.models import RosterState

log = logging.getLogger(__name__)
SOURCES = ("ldap", "files")


def configured_sources(app: Appliance) -> list[str]:
    out = []
    if app.settings.roster.ldap.enabled:
        out.append("ldap")
    if app.settings.roster.files.directory:
        out.append("files")
    return out


def _move(path: Path, folder: str) -> Path:
    target = path.parent / folder
    target.mkdir(mode=0o750, exist_ok=True)
    moved = target / path.name
    shutil.move(str(path), moved)
    return moved


def sync_source(app: Appliance, source: str, *, dry_run: bool, allow_mass_departures: bool = False,
                actor_label: str, via: str, reviewed: str | None = None) -> tuple[RosterReport, str]:
    """Run one source; returns the report and a line naming what was read. Raises Invalid / DirectoryUnavailable
    (nothing changed) when the source cannot be read or the run is refused."""
    settings = app.settings
    drop: Path | None = None
    records: list[RosterRecord]
    if source == "ldap":
        if not settings.roster.ldap.enabled:
            raise Invalid("roster.ldap.enabled is false: the directory is not a roster source")
        from appliance.services.directory.signin import ldap_directory

        records = sources.records_from_ldap(ldap_directory(app), settings)
        read = f"read {len(records)} employee(s) from the directory"
    elif source == "files":
        drop = sources.newest_drop(settings)
        if drop is None:
            return RosterReport("files"), f"no roster file waiting in {settings.roster.files.directory}"
        try:
            records = sources.records_from_file(drop)
        except Invalid as exc:
            if not dry_run:
                moved = _move(drop, "rejected")
                raise Invalid(f"{drop.name} was refused and moved to {moved.parent}: {exc.message}") from None
            raise Invalid(f"{drop.name}: {exc.message}") from None
        read = f"read {len(records)} record(s) from {drop.name}"
    else:
        raise Invalid(f"unknown roster source {source!r} (known: {', '.join(SOURCES)})")
    with app.store.unit_of_work() as session:
        report = roster_plan.run(session, records, source=source, dry_run=dry_run,
                                 max_departures_percent=settings.roster.max_departures_percent,
                                 allow_mass_departures=allow_mass_departures, actor_label=actor_label, via=via,
                                 reviewed=reviewed)
        if report.applied:  # new access persons get their initial-holdings task at once
            from appliance.services.attestations.campaigns import ensure_initial_tasks

            ensure_initial_tasks(session, settings)
    if drop is not None and not dry_run:
        _move(drop, "processed")
    return report, read


def scheduled_sync(app: Appliance, source: str) -> RosterReport | None:
    """The scheduled run of one source: a dry run (recorded for review) until an admin applied the source once,
    then an apply. A run held back (too many departures) or refused raises a warning alert and changes nothing
    else; an unreachable directory is logged and retried at the next run."""
    from appliance.services import alerts
    from appliance.services.roster.plan import state_of

    with app.store.read() as session:
        state = session.get(RosterState, source)
        applied_once = state is not None and state.first_applied_at is not None
    try:
        report, _read = sync_source(app, source, dry_run=not applied_once, actor_label="roster job", via="job")
    except Invalid as exc:
        with app.store.unit_of_work() as session:
            state_of(session, source).last_summary = f"held back: {exc.message}"[:500]
            alerts.raise_alert(session, kind="roster_held_back", severity="warning",
                               title=f"The {source} roster sync was held back: {exc.message}"[:300],
                               detail={"source": source, "reason": exc.message[:1000]})
        log.warning("roster %s: %s", source, exc.message)
        return None
    return report


def import_rows(session: Session, data: bytes, *, actor_label: str, via: str) -> RosterReport:
    """The CSV import as an upsert: created, updated, unchanged, rejected (with the reason) per row; the good
    rows apply even when others are rejected. A file that cannot be read as a whole (encoding, header, empty)
    is refused and changes nothing. The import is not a whole roster: it offboards nobody and marks no source."""
    try:
        records = sources.records_from_csv(data)
    except Invalid as exc:
        message = exc.message if exc.message.startswith("nothing was imported") else \
            f"nothing was imported: {exc.message}"
        raise Invalid(message) from None
    if not records:
        raise Invalid("nothing was imported: the file has no rows")
    report = roster_plan.plan(session, records, source=None, whole_roster=False)
    rejected = [c for c in report.changes if c.kind == "rejected"]
    if len(rejected) == len(report.changes):  # not one good row: an error, like an unreadable file
        listing = "; ".join(f"{c.where}: {c.reason}" for c in rejected[:50])
        more = f" (and {len(rejected) - 50} more)" if len(rejected) > 50 else ""
        raise Invalid(f"nothing was imported: {len(rejected)} bad row(s): {listing}{more}",
                      detail={"errors": [{"where": c.where, "message": c.reason} for c in rejected]})
    roster_plan.apply(session, report, records, source=None, actor_label=actor_label, via=via)
    return report


__all__ = ["SOURCES", "configured_sources", "import_rows", "scheduled_sync", "sync_source"]
