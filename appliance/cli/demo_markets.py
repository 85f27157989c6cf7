"""`vigatra demo`'s prediction-market accounts and its pending pre-clearance request.

A few employees disclose a Polymarket wallet or connect a read-only Kalshi key, through the same onboarding
path an employee's link takes (the address validated, the key's scope probed and sealed); the simulators then
answer the real clients with the positions seeded here, so the poller records them like any other. One
position is on Acme's earnings, a topic on the demo's restricted list ("Project Falcon" names "Acme"): the
rules raise an alert for it at the first poll. One employee asks to buy ETH before trading, and the request
waits for a compliance reviewer (the pre-clearance queue and the overview's panel have something true to
show).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

# Polymarket (wallet addresses) and Kalshi (read-only keys): (employee index, positions). Each position names
# a market of the simulator by a phrase of its question, the outcome held, the shares or contracts, the price.
POLYMARKET = (
    (1, (("Fed cut rates", 0, "1200", "0.58"), ("2028 US presidential", 0, "400", "0.27"))),
    (6, (("Acme Corp Q4 2026", 0, "2500", "0.41"),)),  # the restricted topic: an alert at the first poll
    (12, (("Champions League", 1, "800", "0.97"),)),
    (20, (("Fed cut rates", 1, "350", "0.40"),)),
)
KALSHI = (
    (3, (("KXFEDDECISION-26DEC-C25", "60", "0.5600"), ("KXBTCD-26DEC31-T100000", "-25", "0.3300"))),
    (15, (("KXPRESPARTY-2028-D", "150", "0.4750"),)),
)
# The employee whose pre-clearance request waits (not in the blacked-out deal team: the first two employees).
PRECLEARANCE_EMPLOYEE = 10


def seed_predictions(app: Any, settings: Any, sim: Any, actor: Any, person_ids: list[int]) -> int:
    """Onboard the demo's prediction-market accounts; the number of connections made."""
    import time

    from appliance.services import onboarding
    from appliance.sim.venues.polymarket import MARKETS
    from appliance.venues.base import Credentials

    made = 0
    polymarket = sim.state.venues["polymarket"]
    for index, bets in POLYMARKET:
        wallet = polymarket.create_wallet(None, 0, 0, 0)
        specs, trades = [], []
        for phrase, outcome, size, price in bets:
            market = next(m for m in MARKETS if phrase in m.question)
            specs.append({"condition_id": market.condition_id, "outcome_index": outcome, "size": size,
                          "avg_price": price})
            trades.append({"condition_id": market.condition_id, "outcome_index": outcome, "size": size,
                           "price": price, "side": "BUY", "timestamp": int(time.time()) - (index + 2) * 86400})
        polymarket.add_positions(wallet, 0, specs)
        polymarket.add_trades_to(wallet, 0, trades, None)
        link = _link(app, settings, actor, person_ids[index])
        with app.store.unit_of_work() as session:
            onboarding.record_wallet(session, link, app.venues.get("polymarket"), wallet.address, "Polymarket wallet")
        made += 1
    kalshi = sim.state.venues["kalshi"]
    adapter = app.venues.get("kalshi")
    fingerprint_key = app.keys.derive("fingerprint")
    for index, held in KALSHI:
        key = kalshi.create_key(["read"], history={"positions": 0, "fills": 0, "settlements": 0})
        book = kalshi.book(key.account)
        book.balance_cents = 250_000
        kalshi.add_trades(key.account, 0, explicit=[
            {"ticker": ticker, "side": "yes" if Decimal(size) > 0 else "no", "action": "buy",
             "count": str(abs(Decimal(size))), "yes_price": price} for ticker, size, price in held])
        _kalshi_positions(kalshi, book, held)
        creds = Credentials(key.api_key, key.api_secret, key.passphrase or "")
        probed = onboarding.probe(adapter, creds, "accept_unverified")
        link = _link(app, settings, actor, person_ids[index])
        with app.store.unit_of_work() as session:
            onboarding.record_key_submission(session, app.keys, link, adapter, creds, probed, fingerprint_key)
        made += 1
    return made


def _kalshi_positions(kalshi: Any, book: Any, held: Any) -> None:
    from appliance.sim.venues.kalshi import Position, now_ms

    for ticker, size, price in held:
        book.positions.append(Position(ticker, Decimal(size), Decimal(price), Decimal(0), Decimal("0.35"), now_ms()))


def _link(app: Any, settings: Any, actor: Any, employee_id: int) -> Any:
    from appliance.services import onboarding

    with app.store.unit_of_work() as session:
        row, _token = onboarding.create_link(session, actor, settings, employee_id)
        return onboarding.Link(row.id, row.employee_id, row.purpose, False, row.expires_at)


def seed_preclearance(app: Any, settings: Any, actor: Any, person_ids: list[int]) -> str:
    """A request waiting for a reviewer, as the employee's portal would submit it; its employee's name."""
    from appliance.services import preclearance
    from appliance.store.models import Employee

    ask = preclearance.parse({"asset": "ETH", "side": "buy", "quantity": "3", "venue": "coinbase",
                              "reason": "Long-term savings; adding to my position."})
    with app.store.unit_of_work() as session:
        row = preclearance.submit(session, settings, actor, person_ids[PRECLEARANCE_EMPLOYEE], ask, via="portal")
        employee = session.get(Employee, row.employee_id)
        return employee.name if employee is not None else ""
