"""Balances and prediction positions are observations with validity intervals: a new row only when a
value changes, ``observed_until`` advancing on every successful poll, nothing ever deleted."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from appliance.services.sync import run_cycle
from appliance.store.models import BalanceSnapshot, PredictionPosition
from tests.support.sim import RunningSim
from tests.sync.conftest import current_balances, detached, make_due, onboard, sim_account, sim_balances


def rows(sta: Any, model: Any, connection_id: int) -> list[Any]:
    with sta.store.read() as session:
        return detached(session, list(session.execute(select(model).where(model.connection_id == connection_id)
                                                      .order_by(model.id)).scalars()))


def snapshot(rows_: list[Any], *fields: str) -> dict[int, tuple[Any, ...]]:
    return {r.id: tuple(getattr(r, f) for f in fields) for r in rows_}


def poll(sta: Any, connection_id: int) -> None:
    time.sleep(0.01)  # observed_until must move visibly between polls
    make_due(sta, connection_id)
    assert [o.ok for o in run_cycle(sta.appliance, only=connection_id).outcomes] == [True]


def test_balance_observations(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "kraken")
    sim.control("POST", f"kraken/keys/{key['api_key']}/balances", {"SOL": "12.5"})
    poll(sta, cid)
    first = rows(sta, BalanceSnapshot, cid)
    assert current_balances(sta, cid) == sim_balances(sim, "kraken", key["api_key"])
    assert all(r.valid_to is None and r.observed_until == r.valid_from for r in first)

    # Unchanged balances: no new row, observed_until advances, the rest of each row stays as it was.
    poll(sta, cid)
    second = rows(sta, BalanceSnapshot, cid)
    assert [r.id for r in second] == [r.id for r in first]
    fixed = ("asset", "account", "amount", "valid_from", "valid_to")
    assert snapshot(second, *fixed) == snapshot(first, *fixed)
    assert all(b.observed_until > a.observed_until for a, b in zip(first, second, strict=True))

    # One balance changes and one goes to zero: the old rows are closed, new rows opened, nothing deleted.
    sim.control("POST", f"kraken/keys/{key['api_key']}/balances", {"SOL": "13", "ETH": "0"})
    poll(sta, cid)
    third = rows(sta, BalanceSnapshot, cid)
    assert {r.id for r in second} <= {r.id for r in third}
    new = [r for r in third if r.id not in {s.id for s in second}]
    assert sorted((r.asset, r.amount) for r in new) == [("ETH", Decimal(0)), ("SOL", Decimal(13))]
    closed = {r.asset for r in third if r.valid_to is not None}
    assert closed == {"ETH", "SOL"}
    for r in third:
        if r.valid_to is not None:
            successor = next(n for n in new if n.asset == r.asset)
            assert r.valid_to == successor.valid_from
    assert current_balances(sta, cid) == sim_balances(sim, "kraken", key["api_key"])
    assert "ETH" not in current_balances(sta, cid)

    # The zero row is observed like any other, and is not repeated.
    poll(sta, cid)
    fourth = rows(sta, BalanceSnapshot, cid)
    assert [r.id for r in fourth] == [r.id for r in third]
    eth_zero = next(r for r in fourth if r.asset == "ETH" and r.valid_to is None)
    assert eth_zero.observed_until > next(r for r in third if r.id == eth_zero.id).observed_until

    # A failed poll observes nothing: observed_until stays.
    sim.control("POST", "kraken/faults", {"outage": True})
    make_due(sta, cid)
    assert not run_cycle(sta.appliance, only=cid).outcomes[0].ok
    assert snapshot(rows(sta, BalanceSnapshot, cid), "observed_until", "valid_to") == snapshot(
        fourth, "observed_until", "valid_to")


def test_prediction_position_observations(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "kalshi", history={"positions": 3, "fills": 4, "settlements": 1})
    kalshi, account = sim_account(sim, "kalshi", key["api_key"])
    book = kalshi.book(account)
    poll(sta, cid)
    first = rows(sta, PredictionPosition, cid)
    held = {(p.ticker, "yes" if p.position > 0 else "no"): abs(p.position) for p in book.positions}
    assert {(r.market_id, r.outcome): r.size for r in first if r.valid_to is None} == held
    assert len(first) == len(held)

    poll(sta, cid)
    second = rows(sta, PredictionPosition, cid)
    assert [r.id for r in second] == [r.id for r in first]
    fixed = ("market_id", "outcome", "size", "avg_price", "current_value", "valid_from", "valid_to")
    assert snapshot(second, *fixed) == snapshot(first, *fixed)
    assert all(b.observed_until > a.observed_until for a, b in zip(first, second, strict=True))

    # The employee adds to one position and closes another.
    with sim.app.state.lock:
        grown, gone = book.positions[0], book.positions[1]
        grown.position += 5 if grown.position > 0 else -5
        book.positions.remove(gone)
    poll(sta, cid)
    third = rows(sta, PredictionPosition, cid)
    assert {r.id for r in second} <= {r.id for r in third}
    new = {(r.market_id, r.outcome): r.size for r in third if r.id not in {s.id for s in second}}
    grown_key = (grown.ticker, "yes" if grown.position > 0 else "no")
    gone_key = (gone.ticker, "yes" if gone.position > 0 else "no")
    assert new == {grown_key: abs(grown.position), gone_key: Decimal(0)}
    assert {(r.market_id, r.outcome) for r in third if r.valid_to is not None} == {grown_key, gone_key}
    open_now = {(r.market_id, r.outcome): r.size for r in third if r.valid_to is None and r.size}
    assert open_now == {(p.ticker, "yes" if p.position > 0 else "no"): abs(p.position) for p in book.positions}

    poll(sta, cid)
    assert [r.id for r in rows(sta, PredictionPosition, cid)] == [r.id for r in third]
