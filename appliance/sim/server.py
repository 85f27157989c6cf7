"""The simulator's HTTP front: venues under ``/<venue-id>/...``, the control API under ``/_sim/``.

Control API (a test tool: it returns secrets on purpose). All bodies are JSON.

- ``GET  /_sim/venues``                                 venue ids served
- ``POST /_sim/<venue>/keys``                           ``{"permissions": ["read"], "history": {"trades": 3,
  "deposits": 2, "withdrawals": 1}}`` -> ``{"api_key", "api_secret", "passphrase"?}``
- ``POST /_sim/<venue>/keys/<api_key>/revoke``          the venue now answers as for a deleted key
- ``POST /_sim/<venue>/keys/<api_key>/restore``         undo a revoke
- ``POST /_sim/<venue>/keys/<api_key>/permissions``     ``{"permissions": [...]}``
- ``POST /_sim/<venue>/keys/<api_key>/trades``          ``{"count": N}`` or ``{"trades": [{base, quote, side,
  amount, price, fee, fee_asset, timestamp}]}``; likewise ``/deposits`` and ``/withdrawals``
- ``POST /_sim/<venue>/keys/<api_key>/balances``        ``{"BTC": "1.5"}`` sets balances
- ``POST /_sim/<venue>/keys/<api_key>/transfers/<id>``  ``{"status": "ok"|"failed"|"cancelled"|"rejected"}``: a
  pending deposit or withdrawal gets its outcome (balances follow)
- ``GET  /_sim/<venue>/keys/<api_key>/ledger``          ground truth: balances, trades, deposits, withdrawals
- ``POST /_sim/<venue>/faults``                         ``{"latency_ms", "error_rate", "burst_429", "retry_after",
  "fail_5xx", "timeouts", "timeout_seconds", "malformed", "outage"}``; ``DELETE`` clears them
- ``/_sim/<venue>/...``                                  venue-specific paths (``VenueSim.control``), answered first
- ``GET  /_sim/prices?venue=&base=&quote=&at=``        what a venue quotes for a pair at an instant (market data)
- ``POST /_sim/prices`` ``{"fixed": {"BTC": "50000"}}``  pins assets to flat US-dollar values; ``DELETE`` unpins
- ``GET  /_sim/requests`` (``?venue=``)                 every request received: method, path, query, headers, body
- ``DELETE /_sim/requests``                             clear the log
"""

from __future__ import annotations

import json
import logging
import time
from email.utils import formatdate
from typing import Any

from werkzeug.wrappers import Request as WsgiRequest
from werkzeug.wrappers import Response as WsgiResponse

from appliance.sim.core import Request, Response, SimState, VenueError, VenueSim
from appliance.sim.marketdata import answer as market_answer

log = logging.getLogger(__name__)


def default_venues() -> list[type[VenueSim]]:
    from appliance.sim.venues import ALL_VENUES

    return list(ALL_VENUES)


class SimApp:
    """A plain WSGI application (no Flask: the simulator must not look like the appliance)."""

    def __init__(self, state: SimState | None = None, venues: list[type[VenueSim]] | None = None) -> None:
        self.state = state or SimState()
        for venue_cls in venues if venues is not None else default_venues():
            self.state.register(venue_cls)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = WsgiRequest(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    # -- dispatch -------------------------------------------------------------------------------
    def dispatch(self, wreq: WsgiRequest) -> WsgiResponse:
        parts = wreq.path.lstrip("/").split("/", 1)
        head = parts[0]
        rest = "/" + parts[1] if len(parts) > 1 else "/"
        try:
            if head == "_sim":
                return _to_wsgi(self.control(wreq, rest))
            venue = self.state.venues.get(head)
            if venue is None:
                return _to_wsgi(Response(404, {"error": f"no simulated venue {head!r}"}))
            return _to_wsgi(self.venue_request(venue, wreq, rest))
        except VenueError as exc:
            return _to_wsgi(exc.response)
        except (ValueError, KeyError) as exc:
            return _to_wsgi(Response(400, {"error": str(exc)}))

    def venue_request(self, venue: VenueSim, wreq: WsgiRequest, path: str) -> Response:
        query = wreq.environ.get("QUERY_STRING", "")
        body = wreq.get_data(cache=True)
        req = Request(venue.id, wreq.method, path, query, dict(wreq.headers.items()), body)
        self.state.record(req)
        faults = venue.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        with self.state.lock:
            injected = self._inject(venue)
        if injected is not None:
            if injected.status == 504:
                time.sleep(faults.timeout_seconds)
            return injected
        with self.state.lock:
            try:
                public = market_answer(venue, self.state.prices, req)
                response = public if public is not None else venue.handle(req)
            except VenueError as exc:
                response = exc.response
            # Origin servers with a clock send Date (RFC 9110 section 6.6.1); clients read a venue's time from it
            # where the venue has no time endpoint. From the venue's clock, so a clock offset fault shows in it.
            response.headers.setdefault("Date", formatdate(venue.server_time_ms() / 1000, usegmt=True))
            return response

    def _inject(self, venue: VenueSim) -> Response | None:
        f = venue.faults
        if f.outage:
            return venue.outage_response()
        if f.burst_429 > 0:
            f.burst_429 -= 1
            return venue.rate_limit_response(f.retry_after)
        if f.fail_5xx > 0:
            f.fail_5xx -= 1
            return venue.outage_response()
        if f.timeouts > 0:
            f.timeouts -= 1
            return Response(504, "Gateway Timeout", content_type="text/plain")
        if f.malformed > 0:
            f.malformed -= 1
            return Response(200, "<html>upstream garbage{", content_type="application/json")
        if f.error_rate and self.state.rng.random() < f.error_rate:
            return Response(500, "Internal Server Error", content_type="text/plain")
        return None

    # -- control API ----------------------------------------------------------------------------
    def control(self, wreq: WsgiRequest, path: str) -> Response:
        segs = [s for s in path.split("/") if s]
        method = wreq.method
        body = json.loads(wreq.get_data() or b"{}") if method in ("POST", "PUT") else {}
        with self.state.lock:
            if segs == ["venues"]:
                return Response(200, {"venues": sorted(self.state.venues)})
            if segs == ["prices"]:
                return self.prices_control(wreq, method, body)
            if segs == ["requests"]:
                if method == "DELETE":
                    self.state.log.clear()
                    return Response(200, {"cleared": True})
                venue_filter = wreq.args.get("venue")
                entries = [e for e in self.state.log if not venue_filter or e["venue"] == venue_filter]
                return Response(200, {"requests": entries})
            if not segs or segs[0] not in self.state.venues:
                return Response(404, {"error": "unknown control path or venue"})
            venue = self.state.venues[segs[0]]
            rest = segs[1:]
            custom = venue.control(rest, method, body)
            if custom is not None:
                return custom
            if rest == ["faults"]:
                if method == "DELETE":
                    venue.faults = type(venue.faults)()
                else:
                    venue.faults.update(body)
                return Response(200, {"faults": venue.faults.__dict__})
            if rest == ["keys"] and method == "POST":
                key = venue.create_key(body.get("permissions", ["read"]), history=body.get("history"))
                return Response(200, key.credentials())
            if len(rest) >= 2 and rest[0] == "keys":
                # Some key names contain "/" (Coinbase CDP: organizations/{org}/apiKeys/{id}): longest match.
                for end in range(len(rest), 1, -1):
                    found = venue.keys.get("/".join(rest[1:end]))
                    if found is not None:
                        return self._key_control(venue, found, rest[end:], method, body)
                return Response(404, {"error": "unknown api key"})
        return Response(404, {"error": "unknown control path"})

    def prices_control(self, wreq: WsgiRequest, method: str, body: dict[str, Any]) -> Response:
        """``GET ?venue=&base=&quote=&at=`` what a venue quotes at an instant; ``POST {"fixed": {"BTC": "50000"}}``
        pins assets to flat USD values; ``DELETE`` clears the pins."""
        from decimal import Decimal

        prices = self.state.prices
        if method == "DELETE":
            prices.clear()
            return Response(200, {"fixed": {}})
        if method == "POST":
            prices.set_fixed({str(k): Decimal(str(v)) for k, v in (body.get("fixed") or {}).items()})
            return Response(200, {"fixed": {k: str(v) for k, v in prices.fixed.items()}})
        args = wreq.args
        at = int(args.get("at") or time.time() * 1000)
        return Response(200, {"price": str(prices.price(args["venue"], args["base"], args["quote"], at)), "at": at})

    def _key_control(self, venue: VenueSim, key: Any, rest: list[str], method: str, body: dict[str, Any]
                     ) -> Response:
        account = key.account
        if rest == ["revoke"]:
            key.revoked = True
            return Response(200, {"revoked": True})
        if rest == ["restore"]:
            key.revoked = False
            return Response(200, {"revoked": False})
        if rest == ["permissions"]:
            perms = set(body.get("permissions", []))
            if perms - {"read", "trade", "transfer", "withdraw"}:
                raise ValueError("unknown permission")
            key.permissions = perms
            return Response(200, {"permissions": sorted(perms)})
        if rest == ["ledger"]:
            return Response(200, account.ledger())
        if rest == ["balances"]:
            for asset, amount in body.items():
                from decimal import Decimal

                account.balances[asset] = Decimal(str(amount))
            return Response(200, account.ledger()["balances"])
        if len(rest) == 2 and rest[0] == "transfers" and method == "POST":
            settled = venue.settle_transfer(account, rest[1], str(body.get("status", "")))
            return Response(200, {"id": settled.id, "status": settled.status})
        adders: dict[str, Any] = {"trades": venue.add_trades, "deposits": venue.add_deposits,
                                  "withdrawals": venue.add_withdrawals}
        if len(rest) == 1 and rest[0] in adders and method == "POST":
            explicit = body.get(rest[0])
            made = adders[rest[0]](account, int(body.get("count", 0)), explicit=explicit,
                                   start_ms=body.get("start_ms"))
            return Response(200, {"added": len(made), "ids": [m.id for m in made]})
        return Response(404, {"error": "unknown key control path"})


def _to_wsgi(resp: Response) -> WsgiResponse:
    out = WsgiResponse(resp.encoded(), status=resp.status, content_type=resp.content_type)
    for name, value in resp.headers.items():
        out.headers[name] = value
    return out


def serve(host: str = "127.0.0.1", port: int = 8900, *, seed: int | None = None, threads: int = 32) -> None:
    """Run the simulators until interrupted (``vigatra sim``)."""
    import waitress

    app = SimApp(SimState(seed=seed))
    log.info("venue simulators on http://%s:%d/ (venues: %s)", host, port, ", ".join(sorted(app.state.venues)))
    waitress.serve(app, host=host, port=port, threads=threads, ident="sim", _quiet=True)
