"""Security headers on every response: pages, JSON, errors, redirects, static files.

Applied as WSGI middleware around the Flask app, on the plain header list the app hands to the
server, so that nothing Flask answers escapes them and they cost a list filter per request rather
than a dozen validated header writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
HSTS = ("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
ALWAYS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)
# Pages and API answers may hold personal data: never cache them anywhere (static files may be cached).
NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
# The edge sets this environ key once it has judged the transport (direct TLS, or a trusted proxy's https).
TLS_KEY = "vigatra.tls"

_OURS = frozenset(name.lower() for name, _ in (*ALWAYS, *NO_STORE, HSTS)) | {"server"}


def secure(headers: Iterable[tuple[str, str]], *, tls: bool, static: bool) -> list[tuple[str, str]]:
    """The response's headers with ours in place of any the app set (and no Server header)."""
    out = [(name, value) for name, value in headers if name.lower() not in _OURS]
    out.extend(ALWAYS)
    if tls:
        out.append(HSTS)
    if not static:
        out.extend(NO_STORE)
    return out


class SecurityHeaders:
    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            fixed = secure(headers, tls=bool(environ.get(TLS_KEY)),
                           static=environ.get("PATH_INFO", "").startswith("/static/"))
            return start_response(status, fixed, exc_info) if exc_info else start_response(status, fixed)

        return self.app(environ, start)


def install(app: Flask) -> None:
    app.wsgi_app = SecurityHeaders(app.wsgi_app)  # type: ignore[method-assign]
