"""Reconciliation adds amounts up exactly, on both databases.

Security review, finding 5: the net of a wallet's transfers was summed by the database; SQLite
stores amounts as decimal text and its SUM() turns them into binary floats (0.03125 + 0.03125109 =
0.06250109000000001), so a correct wallet failed to reconcile, opened an ``inconsistent_data`` gap
and alert, and flagged an innocent employee. Amounts of 8 decimals (Bitcoin) and 18 (an ERC-20
token) now reconcile exactly, and a difference of one smallest unit is still caught.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from appliance.services import employees, reconcile
from appliance.settings import settings_from_mapping
from appliance.store.models import Alert, Connection, CoverageInterval, Transaction
from appliance.venues.base import Balance, WalletAdapter
from appliance.venues.chains.bitcoin import BitcoinAdapter
from appliance.venues.chains.evm import EvmAdapter
from appliance.venues.egress import Egress

TOKEN = "0x6B175474E89094C44Da98b954EedeAC495271d0F"
# (adapter, asset, account, [(kind, amount, fee)]): totals that SQLite's float SUM() gets wrong.
CASES: dict[str, tuple[str, str, str, list[tuple[str, str, str | None]]]] = {
    "bitcoin-8-decimals": ("bitcoin", "BTC", "", [
        ("transfer_in", "0.03125", None), ("transfer_in", "0.03125109", None),
        ("transfer_out", "0.00000011", "0.00000003")]),
    "token-18-decimals": ("ethereum", "DAI", TOKEN, [
        ("transfer_in", "0.100000000000000001", None), ("transfer_in", "0.200000000000000002", None),
        ("transfer_in", "1.1", None), ("transfer_in", "2.2", None), ("transfer_out", "0.000000000000000007", None)]),
}


def _adapter(kind: str) -> WalletAdapter:
    settings = settings_from_mapping({"chains": {
        "bitcoin": {"enabled": True, "esplora_url": "http://127.0.0.1:9/api"},
        "evm": {"ethereum": {"rpc_url": "http://127.0.0.1:9/rpc", "start_block": 0}}}})
    egress = Egress(settings)
    if kind == "bitcoin":
        return BitcoinAdapter(egress, settings.chains.bitcoin)
    return EvmAdapter(egress, "ethereum", settings.chains.evm["ethereum"])


def _wallet(store: Any, venue: str, asset: str, account: str, rows: list[tuple[str, str, str | None]]) -> int:
    with store.unit_of_work() as session:
        person = employees.create(session, name="Careful Saver", email=f"saver-{venue}@example.com")
        connection = Connection(employee_id=person.id, kind="wallet", venue=venue, status="active",
                                address="bc1qexample" if venue == "bitcoin" else TOKEN)
        session.add(connection)
        session.flush()
        for n, (kind, amount, fee) in enumerate(rows):
            session.add(Transaction(
                connection_id=connection.id, stream="transfers", venue_tx_id=f"tx-{n}", kind=kind,
                occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=n), asset=asset,
                amount=Decimal(amount), market=account, fee_asset=asset if fee else None,
                fee_amount=Decimal(fee) if fee else None, provenance="chain"))
        return int(connection.id)


def _exact_net(rows: list[tuple[str, str, str | None]]) -> Decimal:
    net = Decimal(0)
    for kind, amount, fee in rows:
        net += Decimal(amount) if kind == "transfer_in" else -Decimal(amount)
        net -= Decimal(fee or 0)
    return net


@pytest.mark.parametrize("case", list(CASES))
def test_a_correct_wallet_reconciles_exactly(store: Any, case: str) -> None:
    venue, asset, account, rows = CASES[case]
    adapter = _adapter(venue)
    assert adapter.reconcilable(asset, account)
    connection_id = _wallet(store, venue, asset, account, rows)
    held = [Balance(asset, _exact_net(rows), account)]
    with store.unit_of_work() as session:
        found = reconcile.mismatches(session, connection_id, adapter, held)
        assert found == []
        connection = session.get(Connection, connection_id)
        reconcile.record(session, connection, "transfers", found)
    with store.read() as session:
        assert session.execute(select(Alert)).scalars().all() == []  # nobody flagged
        assert session.execute(select(CoverageInterval)).scalars().all() == []


@pytest.mark.parametrize("case", list(CASES))
def test_one_smallest_unit_off_is_still_a_mismatch(store: Any, case: str) -> None:
    venue, asset, account, rows = CASES[case]
    connection_id = _wallet(store, venue, asset, account, rows)
    unit = Decimal("1e-8") if venue == "bitcoin" else Decimal("1e-18")
    with store.unit_of_work() as session:
        found = reconcile.mismatches(session, connection_id, _adapter(venue),
                                     [Balance(asset, _exact_net(rows) + unit, account)])
    assert found == [{"asset": asset, "account": account, "balance": format(_exact_net(rows) + unit, "f"),
                      "net_of_transfers": format(_exact_net(rows), "f")}]
