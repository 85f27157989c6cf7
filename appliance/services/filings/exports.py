"""The four Rule 204A-1 reports as the API (api/reports.py) and the report pages (web/filings.py) ask for them:
the permission a report needs beyond its route's, the document read in one read transaction (one moment;
PostgreSQL streams rows only inside one), and the name of its file."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import Forbidden
from appliance.rbac.actors import Actor
from appliance.services.context import Appliance
from appliance.services.filings import pack, periods
from appliance.services.filings.document import Document
from appliance.store.base import utcnow


@dataclass(frozen=True)
class Export:
    document: Document
    filename: str  # without its extension


def _require(actor: Actor, permission: str, message: str) -> None:
    if not actor.can(permission):
        raise Forbidden(message)


def holdings(app: Appliance, actor: Actor, as_of: str | None) -> Export:
    """Holdings at the end of ``as_of`` (default today): the records' export permission, at any scope."""
    _require(actor, "balances:export:flagged", "the holdings report needs balances:export")
    day = periods.parse_day(as_of, "as_of") if as_of else utcnow().date()
    with app.store.read() as snapshot:
        return Export(pack.holdings_document(snapshot, actor, app, day), f"vigatra-holdings-{day.isoformat()}")


def transactions(app: Appliance, actor: Actor, period: str | None, start: str | None, end: str | None) -> Export:
    """Transactions of a quarter, a year or the days from ``start`` to ``end``."""
    _require(actor, "transactions:export:flagged", "the transaction report needs transactions:export")
    chosen = periods.resolve(period, start, end)
    with app.store.read() as snapshot:
        return Export(pack.transactions_document(snapshot, actor, app, chosen),
                      f"vigatra-transactions-{chosen.slug.replace('..', '_')}")


def roster(app: Appliance, actor: Actor) -> Export:
    _require(actor, "employees:read", "the access-person roster needs employees:read")
    with app.store.read() as snapshot:
        return Export(pack.roster_document(snapshot, app), "vigatra-access-persons")


def late(app: Appliance, actor: Actor) -> Export:
    _require(actor, "employees:read", "the late-report list needs employees:read")
    with app.store.read() as snapshot:
        return Export(pack.late_document(snapshot, app), "vigatra-late-reports")
