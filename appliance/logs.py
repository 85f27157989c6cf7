"""Logging for the process: one format, secrets scrubbed from every record.

Every handler carries the RedactingFilter (crypto.redact), so a credential that slips into a log
call is removed before it is written. Third-party loggers that print request headers or signed
URLs at DEBUG (ccxt, urllib3) are held at WARNING whatever the level. Waitress warns "Task queue
depth is N" for every request that waits for a free thread: under sustained load that is a line per
request, written from the server's one I/O thread, so it is let through once a minute with a count.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

from appliance.crypto import RedactingFilter

NOISY = ("ccxt", "urllib3", "requests", "waitress.queue", "apscheduler.executors.default", "alembic.runtime")


QUEUE_LOGGER = "waitress.queue"
QUEUE_WARNING_INTERVAL_SECONDS = 60.0


class OncePerInterval(logging.Filter):
    """Lets one record through per interval; the next one that passes says how many were held back."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._next = 0.0
        self._held = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._held += 1
                return False
            held, self._held, self._next = self._held, 0, now + self.seconds
        if held:
            record.msg = f"{record.msg} (and {held} more such warnings in the last {self.seconds:.0f} s)"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
                   "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def configure(level: int | str = logging.INFO, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    queue = logging.getLogger(QUEUE_LOGGER)
    if not any(isinstance(f, OncePerInterval) for f in queue.filters):
        queue.addFilter(OncePerInterval(QUEUE_WARNING_INTERVAL_SECONDS))
