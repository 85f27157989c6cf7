"""Logging for the process: one format, secrets scrubbed from every record.

Every handler carries the RedactingFilter (crypto.redact), so a credential that slips into a log
call is removed before it is written. Third-party loggers that print request headers or signed
URLs at DEBUG (ccxt, urllib3) are held at WARNING whatever the level.
"""

from __future__ import annotations

import json
import logging
import sys

from appliance.crypto import RedactingFilter

NOISY = ("ccxt", "urllib3", "requests", "waitress.queue", "apscheduler.executors.default", "alembic.runtime")


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
