"""`vigatra prices import|refresh`: prices for air-gapped sites, and a pricing run now."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli.common import audited, cli_state, handle_errors


@click.group()
def prices() -> None:
    """Prices and values in the firm's currency (valuation.currency)."""


@prices.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@handle_errors
def prices_import(file: Path) -> None:
    """Import prices from a CSV (asset,currency,time,price,source); all rows or none.

    \b
    asset,currency,time,price,source
    BTC,USD,2026-01-05T00:00:00Z,43125.50,ECB reference rates

    Times carry Z or an offset (or are a date: midnight UTC); prices are plain decimals. Imported prices are
    used like fetched ones where valuation.venues lists `import`, and values priced from them say so. See
    docs/VALUATION.md.
    """
    from appliance.errors import Invalid
    from appliance.services.valuation.imports import import_prices
    from appliance.services.valuation.job import make_unpriced_due

    data = file.read_bytes()
    try:
        with audited("prices.import", resource_type="prices", detail={"file": file.name}) as (session, info):
            result = import_prices(session, data)
            info.update(rows=result.rows, added=result.added, unchanged=result.unchanged,
                        sources=list(result.sources), sha256=result.sha256)
    except Invalid as exc:
        errors = exc.detail.get("errors")
        if isinstance(errors, list):
            click.echo(f"vigatra: nothing was imported: {len(errors)} bad row(s)", err=True)
            for item in errors[:200]:
                click.echo(f"  line {item['line']}: {item['message']}", err=True)
            if len(errors) > 200:
                click.echo(f"  ... and {len(errors) - 200} more", err=True)
            raise SystemExit(1) from None
        raise
    # Transactions left unpriced are tried again at the next pricing run, now that prices may exist.
    make_unpriced_due(cli_state().appliance())
    click.echo(f"imported {result.added} price(s) ({result.unchanged} already stored) from {file.name}; values "
               "update at the next pricing run (or now: vigatra prices refresh)")


@prices.command("refresh")
@click.option("--retry-unpriced", is_flag=True, help="Also try every unpriced transaction again now.")
@click.option("--limit", type=click.IntRange(1, 100_000_000), help="Transactions to value at most in this run.")
@handle_errors
def prices_refresh(retry_unpriced: bool, limit: int | None) -> None:
    """Run the pricing job now: current prices of what is held, values of transactions not yet valued."""
    from appliance.services.valuation.job import run_pricing

    app = cli_state().appliance()
    result = run_pricing(app, transaction_limit=limit, retry_unpriced=retry_unpriced)
    # Recorded after the run (which writes in transactions of its own): who asked, and what came of it.
    with audited("prices.refresh", resource_type="prices", detail={
            "retry_unpriced": retry_unpriced, "assets": result.assets, "transactions": result.transactions,
            "transactions_unpriced": result.transactions_unpriced}):
        pass
    for line in result.lines():
        click.echo(line)
