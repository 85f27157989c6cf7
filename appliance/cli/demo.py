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
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import click

from appliance.cli.common import handle_errors

FIRST = ("Ada", "Grace", "Alan", "Katherine", "Hedy", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia",
         "Ken", "Margaret", "Dennis", "Shafi", "Tim", "Sophie", "Leslie", "Anita", "Vint")
LAST = ("Lovelace", "Hopper", "Turing", "Johnson", "Lamarr", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus",
        "Perlman", "Thompson", "Hamilton", "Ritchie", "Goldwasser", "Berners-Lee", "Wilson", "Lamport", "Borg", "Cerf")
DEPARTMENTS = ("Trading", "Research", "Portfolio Management", "Sales", "Operations", "Technology",
               "Legal & Compliance")
DEMO_SIZE = 40
# Exchanges the demo's employees connect (the simulators'), and what each account holds and trades.
DEMO_VENUES = ("coinbase", "kraken", "binance", "bybit", "okx", "gemini", "kucoin", "bitstamp")
DEMO_ASSETS = ("BTC", "ETH", "SOL", "USDT")


def demo_employees() -> list[tuple[str, str, str]]:
    """~40 people across the firm's departments: name, e-mail, department (the same every run)."""
    out = []
    for n in range(DEMO_SIZE):
        first, last = FIRST[n % len(FIRST)], LAST[(n * 7 + n // len(FIRST)) % len(LAST)]
        email = f"{first}.{last}".lower().replace("-", "") + "@firm.example"
        out.append((f"{first} {last}", email, DEPARTMENTS[(n * 3) % len(DEPARTMENTS)]))
    return out
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
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Where to keep the demo (an empty or new directory; never deleted). Default: a temporary one.")
@click.option("--keep", is_flag=True, help="Keep the temporary directory on exit (it is removed otherwise).")
@handle_errors
def demo(host: str, port: int, data_dir: str | None, keep: bool) -> None:
    """Run the appliance with simulators and seeded data until Ctrl-C.

    The directory holds data/ (the database), kek.key (the demo's key-encryption key, outside data/) and
    vigatra.yaml, a config other commands can use while the demo runs or after: vigatra --config DIR/vigatra.yaml
    status."""
    import ipaddress

    from appliance.errors import ConfigError

    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise ConfigError("the demo binds loopback only (it accepts onboarding over plain HTTP)")
    except ValueError:
        if host != "localhost":
            raise ConfigError("the demo binds loopback only (it accepts onboarding over plain HTTP)") from None
    named = data_dir is not None
    directory = Path(data_dir).absolute() if data_dir else Path(tempfile.mkdtemp(prefix="vigatra-demo-"))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (directory / "data").exists() or (directory / "kek.key").exists():
        raise ConfigError(f"{directory} already holds a demo; choose an empty --data-dir")
    try:
        _run_demo(host, port, directory, named, keep)
    finally:
        if not named and not keep:
            shutil.rmtree(directory, ignore_errors=True)
            click.echo(f"Removed the demo's temporary directory {directory} (--keep keeps it).")


def _run_demo(host: str, port: int, directory: Path, named: bool, keep: bool) -> None:
    import yaml

    from appliance.logs import configure
    from appliance.serve import run
    from appliance.settings import VENUE_IDS, settings_from_mapping
    from appliance.store.migrate import upgrade
    from appliance.store.session import engine_from_settings

    configure(level="INFO")
    if port == 0:
        port = _free_port(host)
    sim_url, sim = _start_sim()
    kek = directory / "kek.key"
    fd = os.open(kek, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "w") as out:
        out.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    raw: dict[str, Any] = {
        "data_dir": str(directory / "data"),
        "appliance_id": f"demo-{uuid.uuid4()}",
        "server": {"host": host, "port": port, "public_url": f"http://{host}:{port}",
                   "dev_allow_insecure_onboarding": True},
        "keys": {"provider": "file", "file_path": str(kek)},
        "venues": {v: {"base_url": f"{sim_url}/{v}", "requests_per_second": 50, "poll_interval_minutes": 1}
                   for v in VENUE_IDS},
        "chains": {"bitcoin": {"enabled": True, "esplora_url": f"{sim_url}/esplora/api", "network": "mainnet"}},
        "poller": {"tick_seconds": 10, "interval_minutes": 1},
        "audit": {"checkpoint_minutes": 5},
    }
    (directory / "data").mkdir(mode=0o700)
    config = directory / "vigatra.yaml"
    config.write_text("# Written by `vigatra demo`: use it with `vigatra --config " + str(config) + " ...`.\n"
                      + yaml.safe_dump(raw, sort_keys=False))
    settings = settings_from_mapping(raw, env={}, source="vigatra demo")
    engine = engine_from_settings(settings)
    upgrade(engine)
    engine.dispose()
    appliance, logins, seeded = _seed(settings, sim_url, sim)

    def ready(url: str) -> None:
        click.echo("")
        click.echo(f"Vigatra demo is running at {url}/login")
        kept = "yours, kept" if named else "kept (--keep)" if keep else "temporary, removed on exit"
        click.echo(f"  directory: {directory} ({kept})")
        click.echo(f"  config for other commands: vigatra --config {config} status")
        click.echo(f"  venue simulators: {sim_url}/ (control API under /_sim/)")
        for username, role, password in logins:
            click.echo(f"login {username} ({role}) password: {password}")
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
        people = [employees.create(session, name=n, email=e, department=d) for n, e, d in demo_employees()]
        person_ids = [p.id for p in people]
    app.open()
    # Most employees onboard a read-only key or two through the real path (probe, then seal); the accounts hold
    # plausible sums (a few hundred to a few hundred thousand dollars) and traded at the simulators' own prices.
    import random

    rng = random.Random(22)  # noqa: S311 (the same plausible firm every run; nothing secret)
    connected = 0
    fingerprint_key = app.keys.derive("fingerprint")
    revoked = None
    for index, person_id in enumerate(person_ids):
        if index % 5 == 4:
            continue  # a few employees have not connected anything yet
        venues = rng.sample(DEMO_VENUES, 2 if index % 3 == 0 else 1)
        with app.store.unit_of_work() as session:
            row, _token = onboarding.create_link(session, actor, settings, person_id)
            link = onboarding.Link(row.id, row.employee_id, row.purpose, False, row.expires_at)
        for venue in venues:
            simulated = sim.state.venues[venue]
            key = simulated.create_key(["read"], history={"trades": 0, "deposits": 0, "withdrawals": 0})
            _fill_account(sim, simulated, key.account, rng)
            adapter = app.venues.get(venue)
            creds = Credentials(key.api_key, key.api_secret, key.passphrase or "")
            outcome = onboarding.probe(adapter, creds, "accept_unverified")
            with app.store.unit_of_work() as session:
                onboarding.record_key_submission(session, app.keys, link, adapter, creds, outcome, fingerprint_key)
            connected += 1
            revoked = revoked or (key if index == 7 else None)
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
    # Prediction-market accounts (one position on a restricted topic) and a request waiting for a reviewer.
    from appliance.cli import demo_markets

    markets = demo_markets.seed_predictions(app, settings, sim, actor, person_ids)
    asking = demo_markets.seed_preclearance(app, settings, actor, person_ids)
    _seed_attestations(app, actor, person_ids)
    # One employee's key will be revoked at the venue: the poller turns it red within one cycle.
    if revoked is not None:
        revoked.revoked = True
    first = demo_employees()[0][0]
    return app, logins, (f"{len(person_ids)} employees in {len(DEPARTMENTS)} departments, {connected} exchange "
                         "connections (one key is revoked at the venue: watch it turn red); the conduct rules on "
                         f"the Lists and Rules pages raise alerts as the first polls come in; {markets} Polymarket "
                         "and Kalshi accounts (one position is on a restricted topic); a pre-clearance request from "
                         f"{asking} waits in the queue\n"
                         f"  employee portal for {first} (15 minutes, once): {portal_link}\n"
                         "  (more: vigatra employee portal-link --employee ID)")


def _seed_attestations(app: Any, actor: Any, person_ids: list[int]) -> None:
    """Four access persons; a quarterly transactions campaign for the last quarter with one certification
    submitted (waiting for review); one access person of two weeks whose initial holdings report is late."""
    from appliance.services.attestations import campaigns, certify
    from appliance.store.models import Employee

    today = dt.date.today()
    with app.store.unit_of_work() as session:
        people = [session.get(Employee, i) for i in person_ids[:4]]
        for index, person in enumerate(people):
            assert person is not None
            since = today - dt.timedelta(days=14 if index == 3 else 5)
            campaigns.set_access_person(session, app.settings, person, True, since)
        last_quarter = (today.replace(day=1) - dt.timedelta(days=1 + 31 * ((today.month - 1) % 3)))
        period = f"{last_quarter.year}Q{(last_quarter.month - 1) // 3 + 1}"
        quarterly = campaigns.create(session, app.settings, actor, kind="quarterly_transactions", period=period,
                                     due=today + dt.timedelta(days=10))
        first = people[0]
        assert first is not None
        task = next(t for t, e in campaigns.tasks_of(session, quarterly.id) if e.id == first.id)
        certify.declare_account(session, first.id, task.id, venue="Ledger hardware wallet", account="savings",
                                reason="a hardware wallet: no API to connect")
        certify.submit(session, app, first.id, task.id, typed_name=first.name)


def _fill_account(sim: Any, venue: Any, account: Any, rng: Any) -> None:
    """Balances worth a few hundred to a few hundred thousand dollars, and trades at the simulators' prices."""
    import time
    from decimal import Decimal

    now_ms = int(time.time() * 1000)
    wealth = Decimal(int(10 ** rng.uniform(2.5, 5.6)))  # dollars
    held = rng.sample(DEMO_ASSETS, rng.randint(1, 3))
    account.balances.clear()
    for n, asset in enumerate(held):
        share = wealth * Decimal(rng.choice((50, 30, 20)) if n else 60) / 100
        usd = sim.state.prices.usd(asset, now_ms)
        places = Decimal("0.01") if asset == "USDT" else Decimal("0.000001")
        account.balances[asset] = (share / Decimal(str(usd))).quantize(places)
    trades = []
    for _ in range(rng.randint(3, 8)):
        base, quote = rng.choice([m for m in venue.markets if m[1] == "USDT"] or list(venue.markets))
        at = now_ms - rng.randint(2, 30 * 24) * 3_600_000  # the last month: a first pricing run of seconds
        price = sim.state.prices.price(venue.id, base, quote, at)
        notional = Decimal(rng.choice((250, 500, 1200, 2500, 4000, 9000, 15000)))
        amount = (notional / price).quantize(Decimal("0.0001"))
        trades.append({"base": base, "quote": quote, "price": str(price), "amount": str(amount),
                       "side": rng.choice(("buy", "sell")), "at": at})
    trades.sort(key=lambda t: t["at"])
    for spec in trades:
        venue.add_trades(account, 1, start_ms=spec.pop("at"), explicit=[spec])

