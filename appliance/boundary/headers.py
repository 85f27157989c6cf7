"""Security headers on every response: pages, JSON, errors, redirects, static files.

Applied as WSGI middleware around the Flask app, on the plain header list the app hands to the
server, so that nothing Flask answers escapes them and they cost a list filter per request rather
than a dozen validated header writes.

JSON API answers carry what SECURITY.md requires of every response (CSP — whose
``frame-ancestors 'none'`` also forbids framing —, nosniff, Referrer-Policy, no-store, HSTS over
TLS); the headers that only govern how a browser treats a *document* (X-Frame-Options for old
browsers, the opener policy, feature permissions, HTTP/1.0's Pragma) go on pages, redirects,
errors outside the API and static files. Each header costs the server time on every answer, and
the API is what integrations call in volume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from appliance.boundary.paths import is_api_path

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
# JSON answers load nothing and are never framed: the strictest policy there is.
API_CSP = "default-src 'none'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
HSTS = ("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
ALWAYS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
DOCUMENT = (
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)
# Pages and API answers may hold personal data: never cache them anywhere (static files may be cached).
NO_STORE = ("Cache-Control", "no-store")
PRAGMA = ("Pragma", "no-cache")
# The edge sets this environ key once it has judged the transport (direct TLS, or a trusted proxy's https).
TLS_KEY = "vigatra.tls"
# ... and this one to the request's id, sent back as X-Request-ID (it correlates logs and the audit trail).
REQUEST_ID_KEY = "vigatra.request_id"
REQUEST_ID = "X-Request-ID"

_OURS = (frozenset(name.lower() for name, _ in (*ALWAYS, *DOCUMENT, NO_STORE, PRAGMA, HSTS))
         | {"server", "content-security-policy", REQUEST_ID.lower()})


def _ours(*, tls: bool, static: bool, api: bool) -> tuple[tuple[str, str], ...]:
    out = [("Content-Security-Policy", API_CSP if api else CSP), *ALWAYS]
    if not api:
        out.extend(DOCUMENT)
    if tls:
        out.append(HSTS)
    if not static:
        out.append(NO_STORE)
        if not api:
            out.append(PRAGMA)
    return tuple(out)


# Every combination worked out once: this runs on every answer.
_TAILS = {(tls, static, api): _ours(tls=tls, static=static, api=api)
          for tls in (False, True) for static in (False, True) for api in (False, True)}


def secure(headers: Iterable[tuple[str, str]], *, tls: bool, static: bool, api: bool = False,
           request_id: str | None = None) -> list[tuple[str, str]]:
    """The response's headers with ours in place of any the app set (and no Server header)."""
    out = [(name, value) for name, value in headers if name.lower() not in _OURS]
    out.extend(_TAILS[tls, static, api])
    if request_id:
        out.append((REQUEST_ID, request_id))
    return out


class SecurityHeaders:
    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            path = environ.get("PATH_INFO", "")
            fixed = secure(headers, tls=bool(environ.get(TLS_KEY)), static=path.startswith("/static/"),
                           api=is_api_path(path), request_id=environ.get(REQUEST_ID_KEY))
            return start_response(status, fixed, exc_info) if exc_info else start_response(status, fixed)

        return self.app(environ, start)


def install(app: Flask) -> None:
    app.wsgi_app = SecurityHeaders(app.wsgi_app)  # type: ignore[method-assign]
