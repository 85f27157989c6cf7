"""Verifying exports offline (no database, another machine): the signature over the manifest, every
file's digest, the chain recomputed from the CSV's cells, and how a directory's incremental exports link."""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.audit.chain import CHAIN_VERSION, COLUMNS, event_hash
from appliance.audit.export import CSV_COLUMNS, unescape_cell
from appliance.audit.media.manifest import (
    CSV_NAME,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    PARTIAL_NAME,
    PUBLIC_KEY_NAME,
    UNRECORDED_SUFFIX,
    MediaFailed,
    check_listed_files,
    read_signed_manifest,
)
from appliance.audit.verify import VerifyFailed


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    key_id: str

    @property
    def rows(self) -> int:
        return int(self.manifest["row_count"])

    @property
    def mode(self) -> str:
        return str(self.manifest["mode"])

    @property
    def after_event_id(self) -> int:
        return int(self.manifest["after_event_id"])

    @property
    def through_event_id(self) -> int:
        return int(self.manifest["through_event_id"])

    @property
    def first_prev_hash(self) -> str:
        return str(self.manifest["first_prev_hash"])

    @property
    def last_hash(self) -> str:
        return str(self.manifest["last_hash"])

    @property
    def previous(self) -> str | None:
        value = self.manifest.get("previous_manifest_sha256")
        return str(value) if value else None

    def line(self) -> str:
        span = (f"events {self.manifest['first_event_id']}..{self.manifest['last_event_id']}" if self.rows
                else f"no events after {self.after_event_id}")
        return f"{self.path.name}: {self.mode} export of {self.rows} rows ({span}), signed by key {self.key_id}"


_Fail = MediaFailed


def _read_manifest(path: Path, public_key_pem: str | None) -> tuple[dict[str, Any], str, str]:
    signed = read_signed_manifest(path, FORMAT, public_key_pem,
                                  versions={"format_version": FORMAT_VERSION, "chain_version": CHAIN_VERSION})
    return signed.manifest, signed.manifest_sha256, signed.key_id


# The CSV columns of format version 1, in their order in the file (export.CSV_COLUMNS).
_V1_COLUMNS = ("user_id", "action", "resource_type", "resource_id", "ip_address", "timestamp", "id", "actor_type",
               "api_key_id", "request_id", "method", "path", "status", "user_agent", "outcome", "detail", "prev_hash",
               "hash")
# Where each of the chain's COLUMNS sits in a row, and the integer cells that are empty for NULL.
_CHAIN_CELLS = tuple(_V1_COLUMNS.index(name) for name in COLUMNS)
_NULLABLE_CELLS = frozenset(_V1_COLUMNS.index(name) for name in ("user_id", "api_key_id", "status"))
_ID, _PREV, _HASH = (_V1_COLUMNS.index(name) for name in ("id", "prev_hash", "hash"))


def _chain_values(cells: list[str]) -> list[str | None]:
    """One row's values in the chain's column order: escape_cell's prefix undone (only a cell starting
    with "'" can carry it), an empty nullable integer read as NULL."""
    values: list[str | None] = []
    for index in _CHAIN_CELLS:
        cell = cells[index]
        if cell[:1] == "'":
            cell = unescape_cell(cell)
        values.append(None if not cell and index in _NULLABLE_CELLS else cell)
    return values


def _check_csv(path: Path, manifest: dict[str, Any]) -> None:
    """Recompute the chain from the cells (chain.event_hash, as the writer hashed them) and its links."""
    if manifest.get("columns") != list(_V1_COLUMNS) or tuple(CSV_COLUMNS) != _V1_COLUMNS:
        raise _Fail(path, "the manifest's columns are not this format's columns")
    expected_prev = str(manifest["first_prev_hash"])
    after = int(manifest["after_event_id"])
    expect, count = after + 1, 0
    first_hash: str | None = None
    with open(path / CSV_NAME, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, strict=True)
        if next(reader, None) != list(_V1_COLUMNS):
            raise _Fail(path, f"{CSV_NAME}: the header is not {','.join(_V1_COLUMNS)}")
        for line, cells in enumerate(reader, start=2):
            if len(cells) != len(_V1_COLUMNS):
                raise _Fail(path, f"{CSV_NAME} line {line}: {len(cells)} cells, expected {len(_V1_COLUMNS)}")
            try:
                event_id = int(cells[_ID])
            except ValueError:
                raise _Fail(path, f"{CSV_NAME} line {line}: id {cells[_ID]!r} is not a number") from None
            if event_id != expect:
                raise _Fail(path, f"event {expect} is missing or out of order (found {event_id})", event_id=expect)
            if cells[_PREV] != expected_prev:
                raise _Fail(path, f"event {event_id}: prev_hash does not match the previous event's hash",
                            event_id=event_id)
            digest = cells[_HASH]
            if event_hash(_chain_values(cells)) != digest:
                raise _Fail(path, f"event {event_id}: the row's contents do not match its hash", event_id=event_id)
            if first_hash is None:
                first_hash = digest
            expected_prev = digest
            expect += 1
            count += 1
    rows = int(manifest["row_count"])
    if count != rows:
        raise _Fail(path, f"{CSV_NAME} holds {count} rows, the manifest says {rows}")
    last_id = expect - 1 if count else None
    if (manifest.get("first_event_id") != (after + 1 if count else None) or manifest.get("last_event_id") != last_id
            or manifest.get("first_event_hash") != first_hash or manifest.get("last_hash") != expected_prev
            or int(manifest["through_event_id"]) != (last_id if last_id is not None else after)):
        raise _Fail(path, "the manifest's first/last event ids or hashes do not match the CSV")


def verify_export(path: Path | str, *, public_key_pem: str | None = None) -> ExportSummary:
    """Verify one export directory offline; raise VerifyFailed with the reason."""
    folder = Path(path)
    manifest, manifest_sha, key_id = _read_manifest(folder, public_key_pem)
    try:
        check_listed_files(folder, manifest, (CSV_NAME, PUBLIC_KEY_NAME))
        _check_csv(folder, manifest)
    except (KeyError, TypeError, ValueError, csv.Error) as exc:
        raise _Fail(folder, f"malformed export ({type(exc).__name__}: {exc})") from None
    return ExportSummary(folder, manifest, manifest_sha, key_id)


@dataclass(frozen=True)
class MediaReport:
    exports: list[ExportSummary]
    series: list[ExportSummary]
    # What a reader must know beyond "valid": each backup restore the series declares, and the exports
    # written before a restore whose later events the appliance no longer holds.
    notes: tuple[str, ...] = ()
    # Directories left out: exports set aside as never recorded, files of interrupted exports.
    set_aside: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        out = [f"note: {note}" for note in self.set_aside]
        out += [summary.line() for summary in self.exports]
        if len(self.series) > 1:
            out.append(f"series of {len(self.series)} incremental exports links without a gap: events "
                       f"{self.series[0].after_event_id + 1}..{self.series[-1].through_event_id}")
        out.extend(self.notes)
        rows = sum(s.rows for s in self.exports)
        out.append(f"audit export valid: {len(self.exports)} export(s), {rows} rows")
        return out


def verify_media(path: Path | str, *, public_key_pem: str | None = None) -> MediaReport:
    """Verify one export, or every export in a directory and how the incremental ones link."""
    folder = Path(path)
    if not folder.is_dir():
        raise VerifyFailed(f"{folder} is not a directory")
    if (folder / MANIFEST_NAME).exists():
        single = verify_export(folder, public_key_pem=public_key_pem)
        series = [single] if single.mode == "incremental" else []
        return MediaReport([single], series, tuple(_restore_notes(series, [])))
    found, set_aside = [], []
    for entry in sorted(p for p in folder.iterdir() if p.is_dir()):
        if PARTIAL_NAME.fullmatch(entry.name):
            set_aside.append(f"{entry.name}: the files of an interrupted export, not part of the series (the next "
                             "`vigatra audit export` to this directory finishes or removes them)")
        elif entry.name.endswith(UNRECORDED_SUFFIX) and (entry / MANIFEST_NAME).exists():
            set_aside.append(f"{entry.name}: not part of the series: an export the appliance never recorded (its "
                             "run was interrupted), set aside by a later export")
        elif not entry.name.startswith(".") and (entry / MANIFEST_NAME).exists():
            found.append(entry)
    if not found and set_aside:
        raise VerifyFailed(f"{folder} holds no complete audit export; {'; '.join(set_aside)}")
    if not found:
        raise VerifyFailed(f"{folder} holds no audit export ({MANIFEST_NAME} not found)")
    exports = [verify_export(p, public_key_pem=public_key_pem) for p in found]
    series, superseded = _check_series(exports)
    return MediaReport(exports, series, tuple(_restore_notes(series, superseded)), tuple(set_aside))


def _restores(summary: ExportSummary) -> list[dict[str, Any]]:
    value = summary.manifest.get("restores")
    return list(value) if isinstance(value, list) else []


def _links(before: ExportSummary, after: ExportSummary) -> bool:
    gap = after.manifest.get("purged_gap")
    if gap:
        return (int(gap["from_event_id"]) == before.through_event_id + 1
                and int(gap["through_event_id"]) == after.after_event_id)
    return after.after_event_id == before.through_event_id and after.first_prev_hash == before.last_hash


def _continuing(before: ExportSummary, followers: list[ExportSummary]) -> tuple[ExportSummary, list[ExportSummary]]:
    """Which of several exports following ``before`` the series continues with, and the others.

    Two exports may follow one only when a backup restore set the trail back: the export written
    after the restore declares it (signed), and the other branch was written before the restore.
    The series continues with the latest declaring export; every other branch is superseded.
    """
    if len(followers) == 1:
        return followers[0], []
    declaring = sorted((f for f in followers if _restores(f)), key=lambda f: str(f.manifest["created_at"]))
    plain = [f for f in followers if not _restores(f)]
    names = ", ".join(f.path.name for f in followers)
    if not declaring or len(plain) > 1:
        raise VerifyFailed(f"{names} all claim to follow {before.path.name}, and no backup restore explains it")
    chosen = declaring[-1]
    restored_at = min(str(r.get("restored_at", "")) for r in _restores(chosen))
    for other in [*plain, *declaring[:-1]]:
        if str(other.manifest["created_at"]) > restored_at:
            raise VerifyFailed(f"{other.path.name} follows {before.path.name} but was written after the restore "
                               f"{chosen.path.name} declares: the series was forked")
    return chosen, [f for f in followers if f is not chosen]


def _check_series(exports: list[ExportSummary]) -> tuple[list[ExportSummary], list[list[ExportSummary]]]:
    """The series (in order) and the branches a declared restore superseded (each in order)."""
    appliances = {str(s.manifest["appliance_id"]) for s in exports}
    if len(appliances) > 1:
        raise VerifyFailed(f"the exports come from different appliances: {', '.join(sorted(appliances))}")
    keys = {s.key_id for s in exports}
    if len(keys) > 1:
        raise VerifyFailed(f"the exports are signed by different keys ({', '.join(sorted(keys))}); "
                           "pass --public-key with the appliance's key")
    incremental = [s for s in exports if s.mode == "incremental"]
    if not incremental:
        return [], []
    by_sha = {s.manifest_sha256: s for s in incremental}
    followers: dict[str, list[ExportSummary]] = {}
    for s in incremental:
        if s.previous in by_sha:
            followers.setdefault(str(s.previous), []).append(s)
    starts = [s for s in incremental if s.previous not in by_sha]
    if len(starts) != 1:
        names = ", ".join(s.path.name for s in starts)
        raise VerifyFailed(f"the series is broken: {names} do not follow any export here — an export between "
                           "them is missing or was replaced")
    ordered = [starts[0]]
    superseded: list[list[ExportSummary]] = []

    def branch(first: ExportSummary) -> list[ExportSummary]:
        chain = [first]
        while chain[-1].manifest_sha256 in followers:
            nxt = followers[chain[-1].manifest_sha256]
            if len(nxt) > 1:
                raise VerifyFailed(f"exports superseded by a restore fork again after {chain[-1].path.name}")
            chain.append(nxt[0])
        return chain

    while ordered[-1].manifest_sha256 in followers:
        chosen, others = _continuing(ordered[-1], followers[ordered[-1].manifest_sha256])
        superseded += [branch(other) for other in others]
        ordered.append(chosen)
    if len(ordered) + sum(len(b) for b in superseded) != len(incremental):
        raise VerifyFailed("the incremental exports do not form one series")
    for chain, start in [(ordered, None), *((b, by_sha.get(str(b[0].previous))) for b in superseded)]:
        pairs = list(itertools.pairwise(chain if start is None else [start, *chain]))
        for before, after in pairs:
            if not _links(before, after):
                raise VerifyFailed(f"{after.path.name} does not continue {before.path.name}: the series has a gap "
                                   f"after event {before.through_event_id}", event_id=before.through_event_id + 1)
    return ordered, superseded


def _restore_notes(series: list[ExportSummary], superseded: list[list[ExportSummary]]) -> list[str]:
    """Plain sentences for the regulator: what each declared restore did, and which exports it superseded."""
    notes: list[str] = []
    for summary in series:
        for restore in _restores(summary):
            head = restore["restored_head"]
            lost = restore.get("not_in_trail")
            text = (f"{summary.path.name} declares (signed) that the appliance's database was restored on "
                    f"{restore.get('restored_at')} from backup {restore.get('backup_id')} made "
                    f"{restore.get('backup_created_at')}: the trail continues from event {head['last_event_id']} "
                    f"(hash {str(head['last_hash'])[:16]}...)")
            if lost:
                text += (f"; events {lost['from_event_id']}..{lost['through_event_id']} of the replaced database are "
                         "not in the appliance's trail any more (event ids after the restore are new events)")
            notes.append(text)
    for chain in superseded:
        span = f"events {chain[0].after_event_id + 1}..{chain[-1].through_event_id}"
        notes.append(f"superseded by that restore, still valid as written: {', '.join(e.path.name for e in chain)} "
                     f"({span}, written before the restore)")
    return notes
