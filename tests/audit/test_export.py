"""The CSV export (GET /api/v1/audit?format=csv and exports to media).

Its bytes must be exactly what the csv module writes for ``escape_row(row) for row in iter_rows(...)``
(``reference_csv``) whatever the cells hold, under every filter, whether the id ranges are rendered in
this process or by worker processes and stitched back in order. Each part names its rows and its
first/last event (media's manifest), and worker processes are gone as soon as the reader stops.
Both databases (PostgreSQL text cannot hold NUL, so that cell is SQLite-only).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import logging
import multiprocessing
import random
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest

from appliance.audit import export
from appliance.audit.export import CSV_COLUMNS, HEADER, AuditFilter, CsvPart, export_csv
from appliance.store.session import Store
from tests.access.helpers import auth, token
from tests.audit.conftest import Owner, add_events, add_records, record, reference_csv

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
AWKWARD = ["", "plain", "a,b", 'say "hi"', "line\nbreak", "cr\rhere", "crlf\r\n", "=1+1", "'=x", "''x", "'", "'plain",
           "@user", "-3", "+1", "tab\tin", "\tlead", "ünïcödé €", " leading space", "trailing,", '"', ",",
           "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)", '{"query": ["from", "to"]}',
           "\0nul"]
TEXT = ("action", "resource_type", "resource_id", "ip_address", "request_id", "method", "path", "user_agent",
        "outcome", "detail")
EVENTS = 120
FILTERS = [
    AuditFilter(),
    AuditFilter(user_id=1),
    AuditFilter(after_id=10, through_id=70),
    AuditFilter(since=T0 + dt.timedelta(seconds=20), until=T0 + dt.timedelta(seconds=90)),
    AuditFilter(resource_type="employees", action="employees.read"),
    AuditFilter(action="a,b"),
    AuditFilter(user_id=-5, since=T0 + dt.timedelta(seconds=10), after_id=5),
]
IN_PROCESS = {"workers": 1, "range_ids": 7, "page": 3}
IN_WORKERS = {"workers": 2, "parallel_min": 0, "range_ids": 7, "page": 3}
ID, HASH = CSV_COLUMNS.index("id"), CSV_COLUMNS.index("hash")


def awkward_events(store: Store, count: int = EVENTS) -> None:
    """``count`` events: every third an ordinary one; each AWKWARD value twice alone in an otherwise ordinary
    event (what the hand-joined lines must notice), in turn in each text column; the rest with one, two or
    all text cells, the actor type and the integers drawn at random."""
    cells = [c for c in AWKWARD if "\0" not in c] if store.dialect == "postgresql" else AWKWARD
    rng = random.Random(7)
    records = []
    for i in range(count - 2):
        stamp = T0 + dt.timedelta(seconds=i, microseconds=1500 * i)  # milliseconds to truncate
        if i % 3 == 0:
            records.append(record(i, timestamp=stamp))
        elif i // 3 < len(cells):
            records.append(record(i, timestamp=stamp, **{TEXT[i % len(TEXT)]: cells[i // 3]}))
        else:
            fields: dict[str, Any] = {name: rng.choice(cells) for name in rng.sample(TEXT, rng.choice([1, 2, 10]))}
            records.append(record(i, timestamp=stamp, **fields,
                                  actor_type=rng.choice([c for c in cells if len(c) <= 16]),
                                  user_id=rng.choice([None, 0, 1, 2, -5, 10**12]),
                                  api_key_id=rng.choice([None, 0, 7, -3, 10**12]),
                                  status=rng.choice([None, 0, 200, -1, 403])))
    records += [record(count - 2, action="a,b", user_agent='say "hi"'), record(count - 1, action="a,b")]
    add_records(store, records)


def check_parts(parts: list[CsvPart], expected: bytes) -> None:
    """The parts join to ``expected``; the header comes alone first; each part's rows and first/last id and
    hash are those of the lines it holds."""
    assert b"".join(part.data for part in parts) == expected
    assert parts[0] == CsvPart(HEADER)
    for part in parts[1:]:
        lines = list(csv.reader(io.StringIO(part.data.decode("utf-8"), newline="")))
        assert part.rows == len(lines)
        if lines:
            assert (part.first_id, part.first_hash) == (int(lines[0][ID]), lines[0][HASH])
            assert (part.last_id, part.last_hash) == (int(lines[-1][ID]), lines[-1][HASH])
        else:
            assert part == CsvPart(b"")


@pytest.mark.parametrize("how", [IN_PROCESS, IN_WORKERS], ids=["in-process", "workers"])
def test_the_export_is_the_csv_module_csv_under_every_filter(store: Store, how: dict[str, int],
                                                              caplog: pytest.LogCaptureFixture) -> None:
    awkward_events(store)
    for flt in FILTERS:
        expected = reference_csv(store, flt)
        assert expected.count(b"\r\n") > 1, flt  # the header and at least one event
        check_parts(list(export_csv(store, flt, **how)), expected)
    assert "could not run" not in caplog.text  # the workers did run


def test_ranges_are_stitched_in_order_across_many_workers_ranges(store: Store) -> None:
    """More ranges than the window of ranges in flight, some empty (a filter matching few events)."""
    awkward_events(store)
    for flt in (AuditFilter(), AuditFilter(user_id=2)):
        parts = list(export_csv(store, flt, workers=2, parallel_min=0, range_ids=2, page=1))
        check_parts(parts, reference_csv(store, flt))
        assert len(parts) == 1 + EVENTS // 2 or flt.user_id is not None
        ids = [part.first_id for part in parts if part.rows]
        assert ids == sorted(ids)


def test_an_empty_export_is_the_header(store: Store) -> None:
    assert [part.data for part in export_csv(store, AuditFilter(), **IN_WORKERS)] == [HEADER]
    add_events(store, 3)
    assert [part.data for part in export_csv(store, AuditFilter(user_id=99), **IN_WORKERS)] == [HEADER]
    assert reference_csv(store, AuditFilter(user_id=99)) == HEADER  # what the csv module writes


def test_events_appended_during_the_export_are_left_out(store: Store) -> None:
    add_events(store, 20)
    parts = export_csv(store, AuditFilter(), **IN_PROCESS)
    assert next(parts).data == HEADER  # the export's bounds are read before the header is handed on
    add_events(store, 5, start=20)
    rest = list(parts)
    assert sum(part.rows for part in rest) == 20 and rest[-1].last_id == 20


def test_sqlite_timestamp_in_another_text_form(store: Store, owner: Owner) -> None:
    """SQLite may hold a timestamp in another text form (written by hand, an older writer): that row reads it
    through the model's type, as chain verification does, and the line is still the reference's."""
    if store.dialect != "sqlite":
        pytest.skip("SQLite stores timestamps as text")
    awkward_events(store, 12)
    owner.run("UPDATE audit_events SET timestamp = '2026-03-01 00:00:01' WHERE id = 1",  # an ordinary row
              "UPDATE audit_events SET timestamp = '2026-03-01 00:00:02.5' WHERE id = 2")  # an awkward one
    for flt in (AuditFilter(), AuditFilter(since=T0, until=T0 + dt.timedelta(seconds=5))):
        expected = reference_csv(store, flt)
        assert b"2026-03-01T00:00:01.000Z" in expected and b"2026-03-01T00:00:02.500Z" in expected
        for how in (IN_PROCESS, IN_WORKERS):
            check_parts(list(export_csv(store, flt, **how)), expected)


def test_closing_the_export_early_stops_the_workers(store: Store) -> None:
    add_events(store, 60, user_agent="Mozilla/5.0 (KHTML, like Gecko)")
    parts = export_csv(store, AuditFilter(), workers=2, parallel_min=0, range_ids=5, page=2)
    assert next(parts).data == HEADER
    assert next(parts).first_id == 1
    assert len(multiprocessing.active_children()) == 2
    parts.close()  # what a client that goes away does (the WSGI server closes the response)
    assert multiprocessing.active_children() == []
    # The next export may use workers again.
    again = export_csv(store, AuditFilter(), workers=2, parallel_min=0, range_ids=5, page=2)
    next(again), next(again)
    assert len(multiprocessing.active_children()) == 2
    again.close()
    assert multiprocessing.active_children() == []


def test_a_second_export_at_the_same_time_runs_in_process(store: Store) -> None:
    """One parallel export per process: two at once would put four workers on a two-core appliance."""
    add_events(store, 30)
    first = export_csv(store, AuditFilter(), workers=2, parallel_min=0, range_ids=5)
    next(first), next(first)
    workers = set(multiprocessing.active_children())
    assert len(workers) == 2
    second = export_csv(store, AuditFilter(), workers=2, parallel_min=0, range_ids=5)
    parts = [next(second), next(second)]
    assert set(multiprocessing.active_children()) == workers  # no pool of its own
    parts.extend(second)
    check_parts(parts, reference_csv(store, AuditFilter()))
    first.close()
    assert multiprocessing.active_children() == []


class _DyingPool:
    """Stands in for ProcessPoolExecutor: its "workers" (this process) render ``good`` ranges, then the pool
    breaks, as when a spawned worker cannot start or is killed."""

    def __init__(self, good: int) -> None:
        self.good = good

    def __call__(self, *, max_workers: int, mp_context: Any, initializer: Any, initargs: Any) -> _DyingPool:
        initializer(*initargs)
        return self

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        if self.good > 0:
            self.good -= 1
            future.set_result(fn(*args))
        else:
            future.set_exception(BrokenProcessPool("a worker died"))
        return future

    def shutdown(self, *, wait: bool, cancel_futures: bool) -> None:
        if export._worker_engine is not None:
            export._worker_engine.dispose()


@pytest.mark.parametrize("good", [0, 3])
def test_workers_that_cannot_run_fall_back_to_this_process(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture, good: int) -> None:
    awkward_events(store, 40)
    monkeypatch.setattr(export, "_worker_engine", None)
    monkeypatch.setattr(export, "ProcessPoolExecutor", _DyingPool(good))
    with caplog.at_level(logging.WARNING, logger=export.__name__):
        parts = list(export_csv(store, AuditFilter(), workers=2, parallel_min=0, range_ids=4, page=3))
    check_parts(parts, reference_csv(store, AuditFilter()))
    assert "audit export workers could not run" in caplog.text


def test_the_api_csv_is_the_reference(client: Any, ta: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /api/v1/audit?format=csv streams export_csv's bytes, unfiltered and filtered, in worker processes too."""
    from appliance.api import audit as api_audit

    awkward_events(ta.store, 60)
    carol = auth(token(client, ta, "carol"))
    for how in ({}, IN_WORKERS):
        monkeypatch.setattr(api_audit, "export_csv", functools.partial(export_csv, **how))
        for query, flt in (("", AuditFilter()), ("&user_id=1", AuditFilter(user_id=1))):
            response = client.get(f"/api/v1/audit?format=csv{query}", headers=carol, buffered=False)
            assert response.status_code == 200 and response.mimetype == "text/csv"
            chunks = response.iter_encoded()
            body = next(chunks) + next(chunks)  # the header, then the first range
            assert len(multiprocessing.active_children()) == (2 if how else 0)
            body += b"".join(chunks)
            response.close()
            assert multiprocessing.active_children() == []
            last_id = max(int(row[ID]) for row in csv.reader(io.StringIO(body.decode(), newline="")) if row[ID] != "id")
            assert body == reference_csv(ta.store, AuditFilter(user_id=flt.user_id, through_id=last_id))
