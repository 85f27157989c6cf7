"""`vigatra demo`: the whole appliance on a throwaway SQLite database, against the built-in venue
simulators, with seeded users (one per default role), employees and connections onboarded
through the real path (scope probe, sealing) — so a newcomer sees a live dashboard in one command.

Everything stays on loopback. The KEK is a random key held in this process's environment (the
weakest provider, fine for a throwaway demo); onboarding over plain HTTP is allowed because the
demo binds localhost only (``server.dev_allow_insecure_onboarding``).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import click

from appliance.cli.common import handle_errors

DEMO_EMPLOYEES = (
    ("Ada Lovelace", "ada@example.com", "Research"),
    ("Grace Hopper", "grace@example.com", "Trading"),
    ("Alan Turing", "alan@example.com", "Engineering"),
    ("Katherine Johnson", "katherine@example.com", "Risk"),
    ("Hedy Lamarr", "hedy@example.com", "Trading"),
)
DEMO_ROLES = (("admin", "Admin"), ("compliance", "Compliance"), ("viewer", "Viewer"))


def _start_sim(seed: int = 42) -> tuple[str, Any]:
    import waitress.server

    from appliance.sim.core import SimState
    from appliance.sim.server import SimApp

    sim = SimApp(SimState(seed=seed))
    server = waitress.server.create_server(sim, host="127.0.0.1", port=0, threads=16, ident="sim")
    threading.Thread(target=server.run, name="sim", daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}", sim


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback only).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where to keep the demo data (default: a temp dir).")
@handle_errors
def demo(host: str, port: int, data_dir: str | None) -> None:
    """Run the appliance with simulators and seeded data until Ctrl-C."""
    import ipaddress

    from appliance.errors import ConfigError
    from appliance.logs import configure
    from appliance.serve import run
    from appliance.settings import VENUE_IDS, settings_from_mapping
    from appliance.store.migrate import upgrade
    from appliance.store.session import engine_from_settings

    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise ConfigError("the demo binds loopback only (it accepts onboarding over plain HTTP)")
    except ValueError:
        if host != "localhost":
            raise ConfigError("the demo binds loopback only (it accepts onboarding over plain HTTP)") from None
    configure(level="INFO")
    directory = Path(data_dir).absolute() if data_dir else Path(tempfile.mkdtemp(prefix="vigatra-demo-"))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (directory / "vigatra.db").exists():
        raise ConfigError(f"{directory} already holds a demo database; choose an empty --data-dir")
    if port == 0:
        port = _free_port(host)
    sim_url, sim = _start_sim()
    kek_var = f"VIGATRA_DEMO_KEK_{uuid.uuid4().hex[:8].upper()}"
    os.environ[kek_var] = base64.b64encode(secrets.token_bytes(32)).decode()
    raw: dict[str, Any] = {
        "data_dir": str(directory),
        "appliance_id": f"demo-{uuid.uuid4()}",
        "server": {"host": host, "port": port, "public_url": f"http://{host}:{port}",
                   "dev_allow_insecure_onboarding": True},
        "keys": {"provider": "env", "env_var": kek_var},
        "venues": {v: {"base_url": f"{sim_url}/{v}", "requests_per_second": 50, "poll_interval_minutes": 1}
                   for v in VENUE_IDS},
        "chains": {"bitcoin": {"enabled": True, "esplora_url": f"{sim_url}/esplora/api", "network": "mainnet"}},
        "poller": {"tick_seconds": 10, "interval_minutes": 1},
        "audit": {"checkpoint_minutes": 5},
    }
    settings = settings_from_mapping(raw, env={}, source="vigatra demo")
    engine = engine_from_settings(settings)
    upgrade(engine)
    engine.dispose()
    appliance, logins, seeded = _seed(settings, sim_url, sim)

    def ready(url: str) -> None:
        click.echo("")
        click.echo(f"Vigatra demo is running at {url}/login")
        click.echo(f"  data dir: {directory} (throwaway)")
        click.echo(f"  venue simulators: {sim_url}/ (control API under /_sim/)")
        for username, role, password in logins:
            click.echo(f"  login {username:<11} ({role:<10}) password: {password}")
        click.echo(f"  {seeded}")
        click.echo("Press Ctrl-C to stop.")

    run(settings, host=host, port=port, on_ready=ready, appliance=appliance)


def _seed(settings: Any, sim_url: str, sim: Any) -> tuple[Any, list[tuple[str, str, str]], str]:
    from appliance.cli.setup import generate_password
    from appliance.rbac.actors import system_actor
    from appliance.services import employees, identity, onboarding
    from appliance.services.context import Appliance
    from appliance.venues.base import Credentials

    app = Appliance(settings)
    actor = system_actor("demo")
    logins = []
    with app.store.unit_of_work() as session:
        app.keys.create_first(session)
        identity.ensure_builtin_roles(session)
        for username, role in DEMO_ROLES:
            password = generate_password()
            identity.create_user(session, actor, settings.auth, username=username, password=password, roles=[role])
            logins.append((username, role, password))
        people = [employees.create(session, name=n, email=e, department=d) for n, e, d in DEMO_EMPLOYEES]
        person_ids = [p.id for p in people]
    app.open()
    # Each demo employee onboards a read-only key or two through the real path: probe, then seal.
    plan = {0: ["coinbase", "kraken"], 1: ["binance", "bybit"], 2: ["okx"], 3: ["gemini", "kucoin"], 4: ["bitstamp"]}
    connected = 0
    fingerprint_key = app.keys.derive("fingerprint")
    for index, venues in plan.items():
        with app.store.unit_of_work() as session:
            row, _token = onboarding.create_link(session, actor, settings, person_ids[index])
            link = onboarding.Link(row.id, row.employee_id, row.purpose, False, row.expires_at)
        for venue in venues:
            key = sim.state.venues[venue].create_key(["read"], history={"trades": 12, "deposits": 4, "withdrawals": 2})
            adapter = app.venues.get(venue)
            creds = Credentials(key.api_key, key.api_secret, key.passphrase or "")
            outcome = onboarding.probe(adapter, creds, "accept_unverified")
            with app.store.unit_of_work() as session:
                onboarding.record_key_submission(session, app.keys, link, adapter, creds, outcome, fingerprint_key)
            connected += 1
    # Conduct rules to see at work: a restricted list (SOL trades raise critical alerts at the first polls),
    # a watch list for the trading desk, a 30-day holding period and a deal team blacked out this month.
    from appliance.services import conduct

    with app.store.unit_of_work() as session:
        team = conduct.create_group(session, app, actor, name="Deal team", employee_ids=person_ids[:2])
        conduct.create_list(session, app, actor, name="Project Falcon", kind="restricted", entries=[
            {"type": "asset", "value": "SOL", "note": "issuer advised by the firm (deal FALCON-7)"},
            {"type": "market_text", "value": "Acme"}])
        conduct.create_list(session, app, actor, name="Trading desk watch", kind="watch", watch_rule=True,
                            applies_to={"departments": ["Trading"]}, entries=[{"type": "venue", "value": "bybit"}])
        conduct.create_rule(session, app, actor, name="Hold 30 days", kind="holding_period", params={"days": 30})
        today = dt.date.today()
        conduct.create_rule(session, app, actor, name="Quarter-end blackout", kind="blackout",
                            applies_to={"groups": [team.id]}, params={
                                "start": today.replace(day=1).isoformat(), "end": today.isoformat()})
        # Pre-clearance: trades from now on need an approval (the seeded history predates the rule).
        conduct.create_rule(session, app, actor, name="Ask before you trade", kind="preclearance_required")
        from appliance.services import portal

        _link, token = portal.create_link(session, actor, settings, person_ids[0], channel="printed")
        portal_link = portal.link_url(settings, token)
    # One employee's key will be revoked at the venue: the poller turns it red within one cycle.
    revoked = next(k for k in sim.state.venues["bitstamp"].keys.values())
    revoked.revoked = True
    return app, logins, (f"{len(person_ids)} employees, {connected} exchange connections (Hedy's Bitstamp key is "
                         "revoked at the venue: watch it turn red); the conduct rules on the Lists and Rules "
                         "pages raise alerts as the first polls come in\n"
                         f"  employee portal for {DEMO_EMPLOYEES[0][0]} (15 minutes, once): {portal_link}\n"
                         "  (more: vigatra employee portal-link --employee ID)")
