"""`vigatra serve|sim|routes|egress|poll|status`."""

from __future__ import annotations

import click

from appliance.cli.common import cli_state, echo_table, handle_errors


@click.command()
@click.option("--host", help="Bind address (default: server.host).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: server.port).")
@handle_errors
def serve(host: str | None, port: int | None) -> None:
    """Run the appliance: web UI, API and poller in one process, until SIGTERM."""
    from appliance.logs import configure
    from appliance.serve import run

    settings = cli_state().settings()
    configure(level=settings.logging.level, fmt=settings.logging.format)
    run(settings, host=host, port=port, on_ready=lambda url: click.echo(f"serving on {url}", err=True))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8900, show_default=True, type=click.IntRange(0, 65535))
@click.option("--seed", type=int, help="Random seed for generated activity.")
@handle_errors
def sim(host: str, port: int, seed: int | None) -> None:
    """Serve the venue simulators (a test tool) on HOST:PORT until interrupted."""
    import logging

    from appliance.sim.server import serve as serve_sim

    logging.getLogger("appliance.sim").setLevel(logging.INFO)
    click.echo(f"venue simulators on http://{host}:{port}/ (control API under /_sim/)", err=True)
    serve_sim(host, port, seed=seed)


@click.command()
@handle_errors
def routes() -> None:
    """Print every route: method, path, permission."""
    from appliance.app import create_app
    from appliance.boundary.routes import route_table
    from appliance.services.context import Appliance

    app = Appliance(cli_state().settings())
    flask_app = create_app(app)
    for row in route_table(flask_app):
        for method in row.methods:
            click.echo(f"{method} {row.rule} {row.permission}")


@click.command()
@handle_errors
def egress() -> None:
    """Every host the appliance may contact (the customer's sub-processor list)."""
    from appliance.venues.registry import VenueRegistry

    registry = VenueRegistry(cli_state().settings())
    settings = cli_state().settings()
    if settings.egress.proxy:
        click.echo(f"# all requests leave through the proxy {settings.egress.proxy}")
    for venue, host in registry.egress_hosts():
        click.echo(f"{host} {venue}")
    if settings.notifications.smtp.host:
        # The customer's own relay: not through the venue proxy (SMTP, STARTTLS).
        click.echo(f"{settings.notifications.smtp.host}:{settings.notifications.smtp.port} smtp-relay")


@click.command()
@click.option("--once", is_flag=True, required=True, help="Run one polling cycle and exit.")
@click.option("--connection", "connection_id", type=int, help="Only this connection.")
@handle_errors
def poll(once: bool, connection_id: int | None) -> None:
    """Poll the venues now (one cycle) and print what happened."""
    from appliance.services.sync import run_cycle

    app = cli_state().appliance()
    result = run_cycle(app, only=connection_id, force=connection_id is not None)
    for line in result.lines():
        click.echo(line)
    if result.failed and connection_id is not None:
        raise SystemExit(1)


@click.command()
@handle_errors
def status() -> None:
    """The last polling cycle, connection health and backlog."""
    from appliance.services.sync import status_report

    app = cli_state().appliance(open_keys=False)
    report = status_report(app)
    for line in report.lines():
        click.echo(line)


__all__ = ["echo_table", "egress", "poll", "routes", "serve", "sim", "status"]
