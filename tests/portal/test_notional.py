"""Notional approvals and unvalued trades: a trade is valued at its own time (its quote in the base currency, the
pricing job's stored value, or a stored price of its pair near its time); one that cannot be valued is never
counted as zero against a notional approval — it is ``unvalued``, kept for review, and the preclearance_required
rule raises an alert for it. Service level, both databases."""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from appliance.rbac.actors import system_actor
from appliance.services import preclearance_match
from appliance.services.rules import catalogue
from appliance.store.base import utcnow
from appliance.store.models import Alert, Connection, PreclearanceRequest, PriceObservation, Transaction
from tests.portal.conftest import new_employee


def _setup(ta: Any, notional: str) -> tuple[int, int, int]:
    """An employee with a Kraken connection, an approved notional request to buy BTC (valid now) and the rule."""
    employee_id = new_employee(ta)
    now = utcnow()
    with ta.store.unit_of_work() as session:
        rule = catalogue.create(session, system_actor("t"), name=f"Ask first {secrets.token_hex(3)}",
                                kind="preclearance_required")
        rule.created_at = now - dt.timedelta(days=1)
        connection = Connection(employee_id=employee_id, kind="exchange", venue="kraken", label="kraken",
                                status="active", key_fingerprint=secrets.token_hex(8))
        request = PreclearanceRequest(employee_id=employee_id, kind="asset", asset="BTC", side="buy",
                                      notional=Decimal(notional), currency="USD", submitted_via="portal",
                                      status="approved", tolerance_percent=10,
                                      valid_from=now - dt.timedelta(hours=6), expires_at=now + dt.timedelta(hours=6))
        session.add_all([connection, request])
        session.flush()
        return connection.id, request.id, rule.id


def _buy(ta: Any, connection_id: int, amount: str, *, quote: tuple[str, str] | None = None,
         ago: dt.timedelta = dt.timedelta(hours=1)) -> int:
    with ta.store.unit_of_work() as session:
        tx = Transaction(connection_id=connection_id, stream="trades", venue_tx_id=secrets.token_hex(6), kind="buy",
                         occurred_at=utcnow() - ago, asset="BTC", amount=Decimal(amount), market="BTC/EUR",
                         quote_asset=quote[0] if quote else None, quote_amount=Decimal(quote[1]) if quote else None)
        session.add(tx)
        session.flush()
        return int(tx.id)


def _price(ta: Any, price: str, at: dt.datetime) -> None:
    with ta.store.unit_of_work() as session:
        session.add(PriceObservation(kind="candle", source="kraken", asset="BTC", currency="USD", timeframe="1h",
                                     at=at, price=Decimal(price)))


def _match(ta: Any, connection_id: int) -> list[tuple[str, int | None, Decimal]]:
    with ta.store.unit_of_work() as session:
        matches = preclearance_match.match_connection(session, ta.settings, connection_id)
        preclearance_match.raise_alerts(session, ta.settings, matches)
        return [(m.status, m.request_id, m.quantity) for m in matches]


def _alerts(ta: Any, rule_id: int) -> list[str]:
    with ta.store.read() as session:
        return list(session.execute(select(Alert.title).where(Alert.rule_id == rule_id)).scalars())


def test_a_trade_with_no_value_at_its_time_is_unvalued_not_zero(ta: Any) -> None:
    connection_id, request_id, rule_id = _setup(ta, "1000")
    _buy(ta, connection_id, "5")  # quoted in EUR, no stored value, no price of BTC/USD anywhere near
    assert _match(ta, connection_id) == [("unvalued", request_id, Decimal(5))]
    (title,) = _alerts(ta, rule_id)
    assert "with no value at its time" in title and f"request #{request_id}" in title


def test_a_stored_price_near_the_trade_values_it(ta: Any) -> None:
    connection_id, request_id, rule_id = _setup(ta, "1000")
    tx_at = utcnow() - dt.timedelta(hours=1)
    _price(ta, "150", tx_at - dt.timedelta(minutes=40))
    _price(ta, "190", tx_at + dt.timedelta(minutes=10))  # the nearest: 5 x 190 = 950, within 1000 + 10 %
    _price(ta, "1", tx_at - dt.timedelta(hours=3))  # too far from the trade to count
    _buy(ta, connection_id, "5", ago=dt.timedelta(hours=1))
    _buy(ta, connection_id, "1", ago=dt.timedelta(minutes=59))  # 190 more: 1140 > 1100
    assert _match(ta, connection_id) == [("matched", request_id, Decimal(950)),
                                         ("over_quantity", request_id, Decimal(190))]
    assert len(_alerts(ta, rule_id)) == 1


def test_a_price_too_far_from_the_trade_does_not_value_it(ta: Any) -> None:
    connection_id, _request_id, _rule = _setup(ta, "1000")
    _price(ta, "1", utcnow() - dt.timedelta(hours=4))
    _buy(ta, connection_id, "5", ago=dt.timedelta(hours=1))
    assert [s for s, _r, _q in _match(ta, connection_id)] == ["unvalued"]


def test_a_quote_in_the_base_currency_values_the_trade(ta: Any) -> None:
    connection_id, request_id, rule_id = _setup(ta, "1000")
    _buy(ta, connection_id, "5", quote=("USD", "-900"))
    assert _match(ta, connection_id) == [("matched", request_id, Decimal(900))]
    assert _alerts(ta, rule_id) == []
