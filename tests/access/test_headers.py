"""Security headers on every kind of response (pages, JSON, errors, redirects, static files): HSTS only
where the request came over TLS, no-store everywhere but static files, and the app cannot weaken them.
JSON API answers carry the required set (SECURITY.md), documents the browser-document headers too."""

from __future__ import annotations

from typing import Any

ALWAYS = {"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"}  # + HSTS over TLS
DOCUMENT = {"X-Frame-Options", "Cross-Origin-Opener-Policy", "Permissions-Policy"}


def check(response: Any, *, tls: bool, static: bool = False, api: bool = False) -> None:
    assert set(response.headers.keys()) >= ALWAYS, response.headers
    policy = response.headers["Content-Security-Policy"]
    assert all(d in policy for d in ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'")), policy
    assert ("default-src 'none'" in policy) == api, policy  # JSON loads nothing; pages load their own files
    if api:
        assert not DOCUMENT & set(response.headers.keys()), response.headers
    else:
        assert set(response.headers.keys()) >= DOCUMENT, response.headers
    assert ("Strict-Transport-Security" in response.headers) == tls
    assert "Server" not in response.headers
    for name in ALWAYS | DOCUMENT | {"Cache-Control", "Strict-Transport-Security", "X-Request-ID"}:
        assert len(response.headers.getlist(name)) <= 1, name  # ours replace, never add a second
    if static:
        assert response.headers.get("Cache-Control") != "no-store"
    else:
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers.get("Pragma") == (None if api else "no-cache")


def test_every_kind_of_response_carries_the_headers(client: Any) -> None:
    check(client.get("/login"), tls=True)  # a page
    check(client.get("/api/v1/employees"), tls=True, api=True)  # a JSON error (401)
    check(client.get("/api/v1/no/such/thing"), tls=True, api=True)  # a JSON routing 404
    check(client.get("/no/such/page"), tls=True)  # a routing 404
    check(client.get("/"), tls=True)  # a redirect to the login page
    check(client.get("/static/app.css"), tls=True, static=True)
    check(client.get("/healthz"), tls=True)


def test_hsts_only_over_tls(client: Any) -> None:
    check(client.get("/login", base_url="http://localhost"), tls=False)
    # A trusted proxy (loopback by default) saying https counts as TLS; anyone else saying so does not.
    check(client.get("/login", base_url="http://localhost", headers={"X-Forwarded-Proto": "https"}), tls=True)
    check(client.get("/login", base_url="http://localhost", headers={"X-Forwarded-Proto": "https"},
                     environ_base={"REMOTE_ADDR": "192.0.2.9"}), tls=False)


def test_a_view_cannot_weaken_them(flask_app: Any, client: Any) -> None:
    from flask import Response

    def weak() -> Response:
        return Response("x", headers={"Content-Security-Policy": "default-src *", "Cache-Control": "public",
                                      "X-Frame-Options": "ALLOW", "Server": "leaky/1.0"})

    flask_app.view_functions["healthz"] = weak  # an existing public route, answered by a careless view
    response = client.get("/healthz")
    check(response, tls=True)
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


def test_request_ids_are_distinct_and_32_hex(client: Any) -> None:
    import re

    ids = [client.get("/healthz").headers["X-Request-ID"] for _ in range(50)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids[:3]
