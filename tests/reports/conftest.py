"""Report tests: appliances pointed at the simulators (the sync tests' fixtures), the simulator's ledger
replayed to a date (the ground truth the holdings report must equal), and API helpers."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from tests.support.sim import RunningSim
from tests.sync.conftest import https_client, sim_account, sta, sta_factory  # noqa: F401  (shared fixtures)

DAY_MS = 86_400_000


def ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def ledger_at(sim: RunningSim, venue: str, api_key: str, at: dt.datetime) -> dict[str, Decimal]:
    """The simulated account's balances at ``at``: its balances now with every booked event after ``at`` undone,
    as the simulator booked it (sim/core.py: a trade moves base and quote and takes its fee in the quote; a
    deposit adds when ok; a withdrawal takes amount + fee when ok or pending). Zeros left out."""
    _venue_sim, account = sim_account(sim, venue, api_key)
    cut = ms(at)
    with sim.app.state.lock:
        held: dict[str, Decimal] = defaultdict(Decimal, account.balances)
        for t in account.trades:
            if t.timestamp >= cut:
                sign = 1 if t.side == "buy" else -1
                held[t.base] -= sign * t.amount
                held[t.quote] += sign * t.cost + t.fee
        for d in account.deposits:
            if d.timestamp >= cut and d.status == "ok":
                held[d.asset] -= d.amount
        for w in account.withdrawals:
            if w.timestamp >= cut and w.status in ("ok", "pending"):
                held[w.asset] += w.amount + w.fee
    return {asset: amount for asset, amount in held.items() if amount}


def api(built: Any, path: str, persona: str = "alice", **kwargs: Any) -> Any:
    from tests.access.helpers import auth, token

    client = https_client(built)
    return client.get(f"/api/v1{path}", headers=auth(token(client, built, persona)), **kwargs)


def holdings_by_asset(answer: dict[str, Any], account: str | None = None) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for row in answer["rows"]:
        if row["kind"] == "balance" and (account is None or row["account"] == account):
            out[row["asset"]] += Decimal(row["quantity"])
    return {asset: amount for asset, amount in out.items() if amount}
