"""What the firm's employees hold, valued: the total, the assets by value and the value over time, as the pricing
job last recorded them (services/valuation/snapshots.py). Shown to roles that see everyone's balances; prediction
positions are counted in only for roles that see everyone's positions too."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from appliance.rbac.actors import Actor
from appliance.services.overview import Context, panel
from appliance.services.valuation import read as valuation
from appliance.services.valuation.snapshots import PREDICTIONS
from appliance.store.models import FirmAssetValue, FirmValueDay

LISTED = 10
HISTORY_DAYS = 90


def _visible(actor: Actor) -> bool:
    return actor.scope_for("balances:read") == "all"


def _positions(actor: Actor) -> bool:
    return actor.scope_for("predictions:read") == "all"


@panel("holdings", "Value held", order=40, visible=_visible, headline=("value_total",))
def build(ctx: Context) -> dict[str, Any]:
    session, currency = ctx.session, valuation.currency_of(ctx.settings)
    positions = _positions(ctx.actor)
    rows = list(session.execute(select(FirmAssetValue).where(FirmAssetValue.currency == currency)).scalars())
    assets = sorted((r for r in rows if r.kind != PREDICTIONS), key=lambda r: (-r.value, r.asset))
    bets = [r for r in rows if r.kind == PREDICTIONS] if positions else []
    counted = assets + bets
    since = ctx.now.date() - dt.timedelta(days=HISTORY_DAYS)
    days = list(session.execute(select(FirmValueDay).where(FirmValueDay.currency == currency,
                                                           FirmValueDay.day >= since)
                                .order_by(FirmValueDay.day)).scalars())
    return {
        "currency": currency,
        "value_total": sum((r.value for r in counted), Decimal(0)) if counted else None,
        "unpriced": sum(r.unpriced for r in counted),
        "as_of": max((r.as_of for r in counted), default=None),
        "assets": [{"asset": r.asset, "amount": r.amount, "value": r.value, "holders": r.holders,
                    "unpriced": r.unpriced, "reason": r.reason} for r in assets[:LISTED]],
        "other_assets": len(assets[LISTED:]), "other_value": sum((r.value for r in assets[LISTED:]), Decimal(0)),
        "predictions": None if not bets else {"value": bets[0].value, "holders": bets[0].holders,
                                              "unpriced": bets[0].unpriced},
        "history": [{"day": d.day.isoformat(), "value": d.balances + (d.positions if positions else 0)}
                    for d in days],
    }
