"""Redirects never carry a signed venue request past the egress allowlist.

Security review, finding 2: the venue session checked host and path in ``request()``, but
``requests`` follows redirects inside ``send()``: a 302 from a venue's host took the employee's
signed request and key headers to any host. Now a redirect is a transient venue error and nothing
reaches the second address. Two real HTTP servers on loopback: the "venue" redirects, the second
one records whatever arrives.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from appliance.errors import VenueTransient
from appliance.settings import settings_from_mapping
from appliance.venues.egress import Egress, read


class _Recorder(BaseHTTPRequestHandler):
    """The address a redirect points at: records every request it receives."""

    seen: list[dict[str, Any]] = []

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                          "body": self.rfile.read(length) if length else b""})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"result": {}}')

    do_GET = do_POST = _any

    def log_message(self, *args: Any) -> None:
        pass


def _redirector(status: int, location: str) -> type[BaseHTTPRequestHandler]:
    class Redirect(BaseHTTPRequestHandler):
        def _any(self) -> None:
            self.send_response(status)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _any

        def log_message(self, *args: Any) -> None:
            pass

    return Redirect


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


@pytest.fixture
def elsewhere() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    _Recorder.seen = []
    server, port = _serve(_Recorder)
    try:
        yield port, _Recorder.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("target", ["other-host", "same-host"])
def test_a_redirect_is_refused_and_nothing_reaches_the_second_address(
        elsewhere: tuple[int, list[dict[str, Any]]], status: int, target: str) -> None:
    port, seen = elsewhere
    # "localhost" is another host than the venue's 127.0.0.1 as far as the allowlist goes.
    location = f"http://localhost:{port}/steal" if target == "other-host" else "/0/private/Balance2"
    venue, venue_port = _serve(_redirector(status, location))
    try:
        settings = settings_from_mapping({"venues": {"kraken": {"base_url": f"http://127.0.0.1:{venue_port}"}}})
        session = Egress(settings).session("kraken", ("api.kraken.com",),
                                           read("POST", r"/0/private/Balance", r"/0/private/Balance2"))
        with pytest.raises(VenueTransient, match="redirect") as refused:
            session.request("POST", "https://api.kraken.com/0/private/Balance", data=b"nonce=1",
                            headers={"API-Key": "employee-key", "API-Sign": "signature-of-the-employee"})
        assert refused.value.error_class == "transient"
        assert "employee-key" not in str(refused.value) and "signature" not in str(refused.value)
        assert seen == []  # nothing, not even without the key headers
    finally:
        venue.shutdown()
        venue.server_close()


def test_a_redirect_through_ccxt_is_a_classified_venue_error(elsewhere: tuple[int, list[dict[str, Any]]]) -> None:
    """The adapters' ccxt clients go through the same session: the refusal reaches the sync engine as a
    transient venue error (what it records as a failed poll), not as a ccxt exception."""
    from appliance.venues.base import Credentials
    from appliance.venues.exchanges.kraken import KrakenAdapter

    port, seen = elsewhere
    venue, venue_port = _serve(_redirector(302, f"http://localhost:{port}/0/private/Balance"))
    try:
        settings = settings_from_mapping({"venues": {"kraken": {"base_url": f"http://127.0.0.1:{venue_port}"}}})
        adapter = KrakenAdapter(Egress(settings))
        creds = Credentials("an-employee-key", "c2VjcmV0LW9mLXRoZS1lbXBsb3llZQ==")
        with pytest.raises(VenueTransient, match="redirect"):
            adapter.fetch_balances(creds)
        assert seen == []
    finally:
        venue.shutdown()
        venue.server_close()
