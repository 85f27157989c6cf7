"""Pre-clearance by Polymarket URL: the slug a polymarket.com URL names, resolved to a market's condition id.

A polymarket.com URL names an event (``/event/<slug>``) or one market of it (``/event/<event>/<market>``,
``/market/<slug>``); positions and trades name the market's condition id. The slug is looked up in Polymarket's
public Gamma API (``/events?slug=`` or ``/markets?slug=``) through the egress layer — only the public slug
is sent, never anything about the employee. An event with several open markets needs a choice
(``market_choice``: one of their condition ids or slugs); the error lists them. An unknown slug, a closed
market, a host that is not polymarket.com (``polymarket.com.evil.example`` included: :func:`preclearance.parse`
refuses it before anything is sent) answer 400; Polymarket unreachable answers 503. Nothing is stored in any of
those cases: resolution happens before the request is recorded.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from appliance.errors import Invalid, NotFound, Unavailable, VenueError
from appliance.services.context import Appliance
from appliance.services.preclearance import Ask, parse


class SeveralMarkets(Invalid):
    """The URL names an event with several open markets; ``choices`` are (condition id, slug, question)."""

    def __init__(self, slug: str, choices: list[tuple[str, str, str]]) -> None:
        listed = "; ".join(f"{market_slug} ({question}): {condition}" for condition, market_slug, question in choices)
        super().__init__(f"the Polymarket event {slug!r} has {len(choices)} open markets; choose one with "
                         f"market_choice (its slug or condition id): {listed}"[:2000], field="market_choice")
        self.choices = choices


def resolve(app: Appliance, ask: Ask) -> Ask:
    """The request with the URL's market resolved to its condition id (unchanged without a Polymarket URL)."""
    if not ask.slug:
        return ask
    try:
        adapter: Any = app.venues.get("polymarket")
    except NotFound:
        raise Invalid("Polymarket is not enabled on this appliance (venues.polymarket)", field="market_id") from None
    try:
        markets = adapter.markets_by_slug(ask.slug, ask.slug_kind)
    except VenueError as exc:
        raise Unavailable("Polymarket cannot be reached to look this URL up right now; try again later, or give the "
                          f"market's condition id (0x followed by 64 hex digits) [{exc.error_class}]") from None
    if not markets:
        raise Invalid(f"Polymarket has no {ask.slug_kind} named {ask.slug!r}: check the URL", field="market_id")
    open_markets = [m for m in markets if not m.closed]
    if not open_markets:
        raise Invalid(f"the Polymarket {ask.slug_kind} {ask.slug!r} is closed: nothing to pre-clear",
                      field="market_id")
    choice = ask.choice.strip().lower()
    if len(open_markets) == 1 and not choice:
        chosen = open_markets[0]
    else:
        chosen = next((m for m in open_markets if choice and choice in (m.condition_id.lower(), m.slug)), None)
        if chosen is None:
            raise SeveralMarkets(ask.slug, [(m.condition_id, m.slug, m.question) for m in open_markets])
    return dataclasses.replace(ask, market_id=chosen.condition_id, slug="", slug_kind="", choice="")


def ask_from(app: Appliance, data: dict[str, Any]) -> Ask:
    """A request's body, validated (:func:`preclearance.parse`) and its Polymarket URL resolved."""
    return resolve(app, parse(data))


__all__ = ["SeveralMarkets", "ask_from", "resolve"]
