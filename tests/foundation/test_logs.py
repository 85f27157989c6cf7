"""Logging: waitress's per-request "Task queue depth" warning is let through once per interval, with a
count of the ones held back (under sustained load it would otherwise be a line per request)."""

from __future__ import annotations

import logging

import pytest

from appliance.logs import QUEUE_LOGGER, OncePerInterval, configure


def record(message: str = "Task queue depth is %d", args: tuple[int, ...] = (3,)) -> logging.LogRecord:
    return logging.LogRecord(QUEUE_LOGGER, logging.WARNING, __file__, 1, message, args, None)


def test_one_record_per_interval_then_a_count_of_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("appliance.logs.time.monotonic", lambda: clock[0])
    limit = OncePerInterval(60)
    assert limit.filter(record())
    assert [limit.filter(record()) for _ in range(5)] == [False] * 5
    clock[0] += 61
    later = record()
    assert limit.filter(later)
    assert later.getMessage() == "Task queue depth is 3 (and 5 more such warnings in the last 60 s)"


def test_configure_installs_it_once_on_waitress_s_queue_logger() -> None:
    configure()
    configure()
    assert sum(isinstance(f, OncePerInterval) for f in logging.getLogger(QUEUE_LOGGER).filters) == 1
