"""What kind of request a path names: the one definition the session interface, the error handlers and
the security headers share.

An *API request* is one a program makes: the JSON API under ``/api/`` and the Prometheus scrape at
``/metrics``. It carries a bearer credential, never a browser session; its errors are JSON; its answers
are never documents a browser renders.
"""

from __future__ import annotations

API_PREFIX = "/api/"
METRICS_PATH = "/metrics"


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIX) or path == METRICS_PATH
