"""Security headers on every response: pages, JSON, errors, redirects, static files."""

from __future__ import annotations

from flask import Flask, Response, g, request

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def apply(response: Response) -> Response:
    headers = response.headers
    st = g.get("vigatra")
    if st is not None and st.transport.tls:
        headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if not request.path.startswith("/static/"):
        # Pages and API answers may hold personal data: never cache them anywhere.
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
    headers.pop("Server", None)
    return response


def install(app: Flask) -> None:
    app.after_request(apply)
