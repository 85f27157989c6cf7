"""Edge cost: authenticated API throughput (JWT and API key) against a bare Flask route on the same
waitress server, in one run. The edge route does everything a real request does at the edge —
transport facts, request id, credential check against the in-memory state, the route's permission,
the audit record — and the audit writer is swapped for a no-op so that this figure isolates the
edge (bench_audit_overhead.py measures the audit write). Target: edge checks cost under 5% of a
request.

Two baselines, both served by the same waitress server:
- "bare Flask route": a plain Flask app, nothing else;
- "bare route + response headers": the same app behind the appliance's security-headers filter
  (CSP, nosniff, Referrer-Policy, no-store, HSTS, X-Request-ID), which every answer this server
  sends carries — 404s, static files and public pages included. The headers are a property of the
  server's answers, not a check, and they cost the server work per answer (waitress validates and
  re-cases every header), so the edge checks are measured against this baseline; the cost of the
  whole appliance path over a plain Flask route is reported too.
Each baseline is loaded twice, with the JWT request's bytes and with the API-key request's (shorter),
and each edge route is set against the ones that receive its own bytes.

Three measurements:
1. Throughput, each route loaded on its own: the ratio the target is judged by. ``--rounds`` rounds; a
   round measures each edge route against each of its baselines as four adjacent loads of ``--seconds``,
   baseline-route-route-baseline (mirrored every other round), the pairs in a shuffled order. On a shared
   machine the speed drifts from one load to the next by about as much as the effect measured (the
   table shows it: the CPU a request costs outside the app, about the same work for every route, moves
   with it); adjacent, mirrored loads cancel a drift that is linear over them and leave the rest to
   average out over rounds. Reported as the mean cost with its 95% confidence interval, and the median
   with the range. The server's CPU time per request in the same loads is a second figure.
2. The edge's own CPU on the server, at the same moments as the baseline's: the headers baselines and
   the two edge routes in one load, each request's route drawn at random. Each route's CPU time inside
   the app (the serving thread's, :class:`ThreadCpu`) over its baseline's, as a share of the baseline's
   whole request (the work outside the app is the same for these routes but for the request's length:
   :func:`same_answers`). Precise, and a lower bound: the caches the edge's code and data evict slow the
   baseline's requests in the same load too.
3. In process: the same requests called through the same WSGI stack (no sockets, no waitress),
   interleaved in a fresh random order each turn, each call timed, the median per route: the edge's own
   cost in microseconds with warm caches.

Which route ran just before another, and left the caches as it did, moves these small figures by a
microsecond or two; hence the random orders.

    .venv/bin/python -m bench.bench_edge [--rounds 20] [--seconds 1] [--mixed-rounds 5] [--mixed-seconds 10]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import NullAudit, load, load_mixed, print_table, scratch_appliance, start_server, stop_server


def wsgi_environ(url: str, headers: dict[str, str]) -> dict[str, Any]:
    """The WSGI environ waitress would build for a GET of ``url`` with ``headers`` from loopback."""
    parts = urlsplit(url)
    return {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": parts.path, "QUERY_STRING": "",
            "SERVER_NAME": parts.hostname, "SERVER_PORT": str(parts.port), "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False, "HTTP_HOST": parts.netloc, "HTTP_USER_AGENT": "wrk", "HTTP_ACCEPT": "*/*",
            **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}}


def in_process(wsgi: Any, runs: list[tuple[str, str, dict[str, str]]], *, calls: int) -> dict[str, float]:
    """Microseconds per call of ``wsgi`` for each run's GET: the runs' calls interleaved (one of each in
    turn, so they share the machine's moments, in a fresh order each turn, so that no run always follows
    the same one and finds the caches as that one left them), each call timed, the median per run."""
    bases = [(name, wsgi_environ(url, headers)) for name, url, headers in runs]
    shuffle = random.Random(20261130).shuffle
    times: dict[str, list[int]] = {name: [] for name, _ in bases}
    statuses: list[str] = []

    def start_response(status: str, _headers: list[tuple[str, str]], _exc: Any = None) -> None:
        statuses.append(status)

    clock = time.perf_counter_ns
    for _ in range(calls):
        shuffle(bases)
        for name, base in bases:
            environ = {**base, "wsgi.input": io.BytesIO()}
            started = clock()
            body = wsgi(environ, start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
            times[name].append(clock() - started)
    if any(not s.startswith("200") for s in statuses):
        raise SystemExit("not every in-process call answered 200")
    return {name: statistics.median(found) / 1000 for name, found in times.items()}


class ThreadCpu:
    """WSGI middleware that, while ``active``, adds up the CPU time the serving thread spends in the app
    for each request (the call, the body, its close) under the label ``label(environ)`` gives."""

    def __init__(self, app: Any, label: Callable[[dict[str, Any]], str]) -> None:
        self.app = app
        self.label = label
        self.active = False
        self.spent: dict[str, list[int]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not self.active:
            return self.app(environ, start_response)
        label = self.label(environ)
        started = time.thread_time_ns()
        body = self.app(environ, start_response)
        try:
            chunks = list(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        self.spent.setdefault(label, []).append(time.thread_time_ns() - started)  # list.append: atomic
        return chunks


def with_response_headers(app: Any) -> Any:
    """``app`` behind the appliance's security-headers filter, given the two facts the edge otherwise
    hands the filter (the request came over TLS; its id)."""
    from appliance.boundary.headers import REQUEST_ID_KEY, TLS_KEY, SecurityHeaders

    filtered = SecurityHeaders(app)
    request_id = "0" * 32

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        environ[TLS_KEY] = True
        environ[REQUEST_ID_KEY] = request_id
        return filtered(environ, start_response)

    return wsgi


# Two-sided 95% quantiles of Student's t by degrees of freedom (beyond the table, the normal's).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000}


def _mean_ci(values: list[float]) -> str:
    """The mean with its 95% confidence interval (Student's t), in percent."""
    if len(values) < 2:
        return f"{statistics.fmean(values) * 100:.1f}%"
    df = len(values) - 1
    t = _T95.get(df) or next((q for d, q in sorted(_T95.items()) if d >= df), 1.96)
    half = t * statistics.stdev(values) / len(values) ** 0.5
    return f"{statistics.fmean(values) * 100:.1f}% ± {half * 100:.1f}"


def _costs(ratios: list[float]) -> list[float]:
    """Costs from ratios (baseline figure over route figure, or the other way round for throughput)."""
    return [1 - ratio for ratio in ratios]


def _spread(values: list[float], unit: str = "%", scale: float = 100) -> str:
    """Median (range)."""
    return (f"{statistics.median(values) * scale:.1f}{unit} ({min(values) * scale:.1f} .. "
            f"{max(values) * scale:.1f})")


BARE, HEADERS, JWT, KEY = "bare Flask route", "bare route + response headers", "edge + JWT", "edge + API key"
BARE_KEY = "bare Flask route, API-key request"
HEADERS_KEY = "bare route + response headers, API-key request"
# Each edge route against the baselines that receive the same request bytes (an API-key request is shorter
# than a JWT one, and parsing fewer bytes is not the edge's doing): (edge checks, whole path).
BASELINES = {JWT: (HEADERS, BARE), KEY: (HEADERS_KEY, BARE_KEY)}
BASELINE = {route: baselines[0] for route, baselines in BASELINES.items()}
BARES = frozenset(baselines[1] for baselines in BASELINES.values())  # answers with fewer headers


def route_of(environ: dict[str, Any]) -> str:
    """Which of the bench's routes a request is for (the baselines are mounted under prefixes)."""
    path = environ.get("PATH_INFO", "")
    key = environ.get("HTTP_AUTHORIZATION", "").startswith("Bearer vgk_")
    if path.startswith("/bare/"):
        return BARE_KEY if key else BARE
    if path.startswith("/headers/"):
        return HEADERS_KEY if key else HEADERS
    return KEY if key else JWT


def throughput_rounds(runs: list[tuple[str, str, dict[str, str]]], meter: ThreadCpu, args: argparse.Namespace,
                      load_cpus: set[int] | None) -> dict[str, Any]:
    """Each edge route loaded on its own against each of its baselines, ``args.rounds`` rounds.

    A round measures every pair (baseline, edge route) as four adjacent loads, baseline-route-route-baseline
    (route-baseline-baseline-route in every other round), so that a drift of the machine's speed that is
    linear over those loads cancels and the two routes of a pair are measured seconds apart; the pairs'
    order is shuffled each round. A pair's figure is the route's requests over the baseline's in those
    loads. Besides the throughput: the server's CPU time per request, and how much of it was spent outside
    the app (the same work for every route: how far it moves from one load to the next is the drift)."""
    targets = {name: (target, headers) for name, target, headers in runs}
    out: dict[str, Any] = {key: {name: [] for name in targets} for key in ("rates", "cpu", "inside", "outside")}
    out["errors"] = dict.fromkeys(targets, 0)
    out["pairs"] = {(baseline, route): {"rate": [], "cpu": []}
                    for route, baselines in BASELINES.items() for baseline in baselines}
    shuffle = random.Random(args.order_seed).shuffle  # each run its own orders, the same in every bench

    def measure(name: str) -> tuple[float, float]:
        target, headers = targets[name]
        meter.spent = {}
        meter.active = True
        started = time.process_time()  # this process is the server: every thread's CPU time counts
        result = load(target, headers, seconds=args.seconds, connections=args.connections, cpus=load_cpus)
        cpu = time.process_time() - started
        meter.active = False
        answered = meter.spent.get(name, [])
        spent = cpu / max(len(answered), 1) * 1e6
        inside = statistics.fmean(answered or [0]) / 1000
        out["rates"][name].append(result.requests_per_second)
        out["cpu"][name].append(spent)
        out["inside"][name].append(inside)
        out["outside"][name].append(spent - inside)
        out["errors"][name] += result.errors
        out["tool"] = result.tool
        return result.requests_per_second, spent

    for number in range(args.rounds):
        pairs = list(out["pairs"])
        shuffle(pairs)
        for baseline, route in pairs:
            sequence = [baseline, route, route, baseline] if number % 2 == 0 else [route, baseline, baseline, route]
            found: dict[str, list[tuple[float, float]]] = {baseline: [], route: []}
            for name in sequence:
                found[name].append(measure(name))
            rate = {name: sum(r for r, _ in loads) for name, loads in found.items()}
            cpu = {name: sum(c for _, c in loads) for name, loads in found.items()}
            out["pairs"][baseline, route]["rate"].append(rate[route] / rate[baseline])
            out["pairs"][baseline, route]["cpu"].append(cpu[baseline] / cpu[route])
    return out


def mixed_rounds(url: str, runs: list[tuple[str, str, dict[str, str]]], meter: ThreadCpu, args: argparse.Namespace,
                 load_cpus: set[int] | None) -> dict[str, Any]:
    """The headers baselines and the edge routes in one load, each request's route drawn at random,
    ``args.mixed_rounds`` times (the bare routes' answers are shorter, so they are not in this load).

    Per round: the server's CPU time per request (all its threads, over every request answered) and
    each route's CPU time inside the app (``meter``). Whatever a request costs outside the app —
    sockets, HTTP parsing, thread hand-offs — is the same for these routes but for the length of the
    request (answers of the same length with the same headers: :func:`same_answers`), so a baseline's
    whole request costs about the average request less the average time in the app plus the baseline's;
    the edge's cost is a route's time in the app over its baseline's (the one receiving the same request
    bytes), as a share of that baseline's whole request.
    """
    runs = [run for run in runs if run[0] not in BARES]
    targets = [(urlsplit(target).path, headers) for _, target, headers in runs]
    out: dict[str, Any] = {"request_us": [], "app_us": {name: [] for name, _, _ in runs}, "edge": {}}
    for _ in range(args.mixed_rounds):
        meter.spent = {}
        meter.active = True
        started = time.process_time()
        result = load_mixed(url, targets, seconds=args.mixed_seconds, connections=args.connections, cpus=load_cpus)
        cpu = time.process_time() - started
        meter.active = False
        if result.errors:
            raise SystemExit(f"{result.errors} requests of the mixed load did not answer 2xx")
        mean_us = {name: statistics.fmean(found) / 1000 for name, found in meter.spent.items()}
        answered = sum(len(found) for found in meter.spent.values())
        request_us = cpu / answered * 1e6
        average_us = sum(sum(found) for found in meter.spent.values()) / answered / 1000
        # The difference is taken between medians: every request here leaves a little cyclic garbage behind
        # (Werkzeug's router), so a collection runs every hundred requests or so, in whichever request
        # crosses the threshold; that cost belongs to all of them, not to the route it happens to land in.
        app_us = {name: statistics.median(found) / 1000 for name, found in meter.spent.items()}
        out["request_us"].append(request_us)
        out["tool"] = result.tool
        for name, us in app_us.items():
            out["app_us"][name].append(us)
            baseline = BASELINE.get(name, name)
            whole_us = request_us - (average_us - mean_us[baseline])  # the baseline's whole request
            out["edge"].setdefault(name, []).append((us - app_us[baseline]) / whole_us)
    return out


def same_answers(runs: list[tuple[str, str, dict[str, str]]]) -> None:
    """The headers baselines and the edge routes answer with the same status, length and header names and
    sizes: only then is the work outside the app the same for them. (The bare routes' answers carry
    fewer headers, so the one-load figures leave them out.)"""
    import requests

    answers = {}
    for name, target, headers in runs:
        response = requests.get(target, headers=headers, timeout=10)
        shown = [(n.lower(), len(v)) for n, v in response.headers.items() if n.lower() != "date"]
        answers[name] = (response.status_code, len(response.content), sorted(shown))
    if len({str(answer) for name, answer in answers.items() if name not in BARES}) != 1:
        raise SystemExit(f"the routes' answers differ: {answers}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=4,
                        help="independent runs, each in a fresh server process (its own memory layout)")
    parser.add_argument("--seconds", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10, help="throughput rounds per run")
    parser.add_argument("--mixed-seconds", type=int, default=10)
    parser.add_argument("--mixed-rounds", type=int, default=3, help="one-load rounds per run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--inprocess-calls", type=int, default=20_000)
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let the server and the load generator share every CPU")
    parser.add_argument("--json", help=argparse.SUPPRESS)  # one run, its figures written to this file
    parser.add_argument("--order-seed", type=int, default=0, help=argparse.SUPPRESS)  # that run's number
    args = parser.parse_args()
    if args.json is None:
        report(args, [one_run(args, run) for run in range(args.runs)])
        return
    # The server (this process, every thread it starts from here on) on one CPU, the load generator on the
    # others: otherwise they take turns on the same CPUs and the scheduler's choices add to the noise.
    # A GIL-bound server uses about one CPU anyway.
    available = sorted(os.sched_getaffinity(0))
    load_cpus = set(available[1:]) if args.pin and len(available) >= 2 else None
    if load_cpus:
        os.sched_setaffinity(0, {available[0]})

    from flask import Flask, jsonify
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from appliance.app import create_app
    from appliance.boundary.routes import requires

    built, _directory = scratch_appliance()
    app = built.appliance
    app.audit = NullAudit()  # type: ignore[assignment]
    flask_app = create_app(app)

    @requires("employees:read", action="bench.ping")
    def ping() -> object:
        return jsonify({"ok": True})

    flask_app.add_url_rule("/api/v1/bench/ping", "bench_ping", ping)
    bare = Flask("bare")

    @bare.route("/api/v1/bench/ping")
    def bare_ping() -> object:
        return jsonify({"ok": True})

    # The baselines answer the edge route's path under a prefix: the same path for Flask to match (and
    # under /api/, so the filtered copy carries what API answers carry), and the same number of steps
    # for the dispatcher, which tries every prefix of a path before it falls back to the appliance.
    wsgi = DispatcherMiddleware(flask_app, {"/bare": bare, "/headers": with_response_headers(bare)})
    meter = ThreadCpu(wsgi, route_of)
    url, server = start_server(meter)
    client = flask_app.test_client()
    token = client.post("/api/v1/auth/token", base_url="https://localhost",
                        json={"username": "alice", "password": built.personas["alice"].password}).get_json()
    key = client.post("/api/v1/apikeys", base_url="https://localhost", json={"username": "alice", "name": "bench"},
                      headers={"Authorization": f"Bearer {token['access_token']}"}).get_json()["api_key"]
    tls = {"X-Forwarded-Proto": "https"}  # the bench client plays the TLS front on loopback
    jwt = {**tls, "Authorization": f"Bearer {token['access_token']}"}
    with_key = {**tls, "Authorization": f"Bearer {key}"}
    # Each baseline receives an edge route's request bytes (and ignores them): the difference is what the edge does.
    runs = [
        (BARE, f"{url}/bare/api/v1/bench/ping", jwt),
        (BARE_KEY, f"{url}/bare/api/v1/bench/ping", with_key),
        (HEADERS, f"{url}/headers/api/v1/bench/ping", jwt),
        (HEADERS_KEY, f"{url}/headers/api/v1/bench/ping", with_key),
        (JWT, f"{url}/api/v1/bench/ping", jwt),
        (KEY, f"{url}/api/v1/bench/ping", with_key),
    ]
    same_answers(runs)
    for _name, target, headers in runs:  # warm up every path
        load(target, headers, seconds=2, connections=args.connections, cpus=load_cpus)
    apart = throughput_rounds(runs, meter, args, load_cpus)
    mixed = mixed_rounds(url, runs, meter, args, load_cpus)
    micro = in_process(wsgi, runs, calls=args.inprocess_calls)
    stop_server(server)
    app.close()
    apart["pairs"] = {"\t".join(pair): figures for pair, figures in apart["pairs"].items()}
    Path(args.json).write_text(json.dumps({"names": [name for name, _, _ in runs], "apart": apart,
                                           "mixed": mixed, "micro": micro}))


def one_run(args: argparse.Namespace, number: int) -> dict[str, Any]:
    """One run of the bench in a fresh process: where its objects land in memory, and its hash seed, are its
    own, and they move these small figures by as much as the effect measured, the same way for a whole run
    (so the rounds of one run are not independent samples; the runs are)."""
    options = [f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items()
               if name not in ("runs", "json", "pin", "order_seed")]
    with tempfile.TemporaryDirectory(prefix="vigatra-bench-") as directory:
        out = Path(directory) / "run.json"
        print(f"run {number + 1} of {args.runs} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "bench.bench_edge", *options, *([] if args.pin else ["--no-pin"]),
                        f"--order-seed={number}", f"--json={out}"], check=True, cwd=Path(__file__).resolve().parents[1])
        found: dict[str, Any] = json.loads(out.read_text())
    found["apart"]["pairs"] = {tuple(pair.split("\t")): figures for pair, figures in found["apart"]["pairs"].items()}
    return found


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    names: list[str] = results[0]["names"]
    edges = [name for name in names if name in BASELINES]

    def loads(part: str, name: str) -> list[float]:
        return [value for result in results for value in result["apart"][part][name]]

    def against(route: str, figure: str) -> list[str]:
        """For each of the route's baselines (edge checks, whole path): the mean cost over runs with its 95%
        confidence interval (a run is one sample: its rounds' mean), each run's, and over all rounds."""
        if route not in BASELINES:
            return ["", "", "", "", "", ""]
        cells = []
        for baseline in BASELINES[route]:
            rounds = [_costs(result["apart"]["pairs"][baseline, route][figure]) for result in results]
            means = [statistics.fmean(costs) for costs in rounds]
            cells += [_mean_ci(means), " / ".join(f"{mean * 100:.1f}" for mean in means),
                      _mean_ci([cost for costs in rounds for cost in costs])]
        return cells

    columns = ("edge checks: mean ± 95% CI over runs", "each run's mean", f"over all {len(results) * args.rounds} "
               "rounds", "whole path over bare Flask: mean ± 95% CI over runs", "each run's mean", "over all rounds")
    print_table(f"Throughput, each route loaded on its own ({results[0]['apart']['tool']}, {args.connections} "
                f"connections; {len(results)} runs, each in a fresh server process, of {args.rounds} rounds, each "
                "round measuring every edge route against each of its baselines as four adjacent loads of "
                f"{args.seconds}s, baseline-route-route-baseline; cost = 1 - the route's requests over the "
                "baseline's in those loads; edge checks: against the headers baseline, whole path: against the "
                "bare Flask route, each receiving the same request bytes)",
                [(name, f"{statistics.median(loads('rates', name)):,.0f}",
                  str(sum(result["apart"]["errors"][name] for result in results)), *against(name, "rate"))
                 for name in names],
                ("route", "median req/s", "errors", *columns))
    print_table("Server CPU per request, each route loaded on its own (the same loads; cost = 1 - the baseline's CPU "
                "per request over the route's; the CPU a request costs outside the app is about the same work for "
                "every route, so how far it moves is the machine's drift)",
                [(name, f"{statistics.median(loads('cpu', name)):.0f} us", *against(name, "cpu"),
                  _spread(loads("inside", name), " us", 1), _spread(loads("outside", name), " us", 1))
                 for name in names],
                ("route", "median CPU per request", *columns, "in the app (mean): median (range) over loads",
                 "outside the app: median (range)"))
    def mixed(part: str, name: str) -> list[float]:
        return [value for result in results for value in result["mixed"][part][name]]

    request_us = statistics.median(us for result in results for us in result["mixed"]["request_us"])
    print_table(f"The edge's own CPU on the server, at the same moments as the baseline's: the headers baselines "
                f"and the edge routes in one load ({results[0]['mixed']['tool']}, {args.connections} connections, "
                f"each request's route drawn at random, {args.mixed_rounds} rounds of {args.mixed_seconds}s per run; "
                f"an average request cost the server {request_us:.0f} us; edge checks = median CPU in the app over "
                "the baseline's (the one receiving the same request bytes), as a share of the baseline's whole "
                "request; a lower bound: what the edge's code and data push out of the caches slows the "
                "baseline's requests in this load too)",
                [(name, f"{statistics.median(mixed('app_us', name)):.1f} us",
                  *([" / ".join(f"{statistics.median(result['mixed']['edge'][name]) * 100:.1f}" for result in results),
                     _spread(mixed("edge", name))] if name in edges else ["", ""]))
                 for name in names if name in results[0]["mixed"]["app_us"]],
                ("route", "server CPU in the app: a request's median (median over rounds)",
                 "edge checks: each run's median", "median (range) over all rounds"))
    alone_us = 1e6 / statistics.median(loads("rates", BARE))

    def share(name: str, baseline: str) -> str:
        extra = [result["micro"][name] - result["micro"][baseline] for result in results]
        us = statistics.median(extra)
        return f"{us:.1f} us = {us / alone_us * 100:.1f}% ({min(extra):.1f} .. {max(extra):.1f} us)"

    print_table(f"Cost in process ({args.inprocess_calls:,} WSGI calls per route and run, interleaved, median; "
                f"median (range) over runs; a whole request on the server takes {alone_us:.0f} us at the bare "
                "route's median throughput)",
                [(name, f"{statistics.median(result['micro'][name] for result in results):.1f}",
                  *([share(name, baseline) for baseline in BASELINES[name]] if name in edges else ["", ""]))
                 for name in names],
                ("route", "us per call", "edge checks (over bare route + response headers, same request bytes)",
                 "whole path (over bare Flask route, same request bytes)"))


if __name__ == "__main__":
    main()
