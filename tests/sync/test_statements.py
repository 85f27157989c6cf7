"""Statement imports through the real paths (`vigatra import statement` in a subprocess, and the upload on the
employee page), on both databases: records the API already gave are not duplicated, what the statement adds is
marked with its origin, the gaps it covers close, and a bad file changes nothing."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from appliance.services.sync import run_cycle
from appliance.sim.core import fmt
from appliance.sim.venues.kraken import PAIRS, asset_id, kraken_id
from appliance.store.models import AuditEvent, CoverageInterval, StatementImport, Transaction
from tests.access.helpers import csrf_of, login_session
from tests.support.sim import RunningSim
from tests.sync.conftest import connection, detached, https_client, onboard, sim_account, vigatra, write_config


def rows_of(sta: Any, connection_id: int, stream: str) -> list[Transaction]:
    with sta.store.read() as session:
        return detached(session, list(session.execute(select(Transaction).where(
            Transaction.connection_id == connection_id, Transaction.stream == stream)
            .order_by(Transaction.occurred_at)).scalars()))


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def kraken_time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-2]


def binance_time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms // 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def test_kraken_trades_export_overlapping_synced_trades_adds_only_the_older_ones(
        sta: Any, sim: RunningSim, tmp_path: Path) -> None:
    cid, key = onboard(sta, sim, "kraken", history={"trades": 3, "deposits": 0, "withdrawals": 0})
    assert run_cycle(sta.appliance).outcomes[0].ok
    synced = {r.venue_tx_id for r in rows_of(sta, cid, "trades")}
    assert len(synced) == 3
    _venue, account = sim_account(sim, "kraken", key["api_key"])
    header = ["txid", "ordertxid", "pair", "aclass", "time", "type", "ordertype", "price", "cost", "fee", "vol",
              "margin", "misc", "ledgers"]
    rows = [[kraken_id("T", t.id), kraken_id("O", t.order_id), PAIRS[(t.base, t.quote)][0], "forex",
             kraken_time(t.timestamp), t.side, "limit", fmt(t.price), fmt(t.cost), fmt(t.fee), fmt(t.amount), "0", "",
             ""] for t in account.trades if (t.base, t.quote) in PAIRS]
    older = dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    rows.append(["TOLDER-AAAAA-BBBBBB", "OOLDER-AAAAA-BBBBBB", "XXBTZUSD", "forex",
                 older.strftime("%Y-%m-%d %H:%M:%S.0000"), "buy", "limit", "50000.1", "5000.01", "8.0", "0.1",
                 "0", "", ""])
    path = tmp_path / "trades.csv"
    path.write_text(csv_text(header, rows))
    config = write_config(sta, tmp_path / "vigatra.yaml")
    done = vigatra(config, "import", "statement", "--connection", str(cid), str(path))
    assert done.returncode == 0, done.stderr
    assert "1 added, 3 already recorded" in done.stdout
    trades = rows_of(sta, cid, "trades")
    assert len(trades) == 4  # no duplicates
    (imported,) = [t for t in trades if t.provenance == "statement"]
    assert imported.venue_tx_id == "TOLDER-AAAAA-BBBBBB" and imported.occurred_at == older
    assert (imported.asset, imported.market, imported.amount) == ("BTC", "BTC/USD", Decimal("0.1"))
    with sta.store.read() as session:
        statement = session.get(StatementImport, imported.statement_import_id)
        assert statement is not None and statement.format == "kraken_trades"
        assert (statement.rows, statement.added, statement.duplicates) == (4, 1, 3)
        assert statement.imported_by.startswith("cli:")
        events = session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "statements.import", AuditEvent.resource_id == str(cid))).scalar_one()
        assert events == 1
    again = vigatra(config, "import", "statement", "--connection", str(cid), str(path))
    assert again.returncode == 0 and "0 added, 4 already recorded" in again.stdout
    assert len(rows_of(sta, cid, "trades")) == 4


def test_binance_trade_export_is_matched_to_synced_trades_without_ids(sta: Any, sim: RunningSim,
                                                                       tmp_path: Path) -> None:
    cid, key = onboard(sta, sim, "binance", history={"trades": 4, "deposits": 1, "withdrawals": 0})
    assert run_cycle(sta.appliance).outcomes[0].ok
    synced = rows_of(sta, cid, "trades")
    assert synced
    _venue, account = sim_account(sim, "binance", key["api_key"])
    header = ["Date(UTC)", "Pair", "Side", "Price", "Executed", "Amount", "Fee"]
    rows = [[binance_time(t.timestamp), t.base + t.quote, t.side.upper(), fmt(t.price), f"{fmt(t.amount)}{t.base}",
             f"{fmt(t.cost)}{t.quote}", f"{fmt(t.fee)}{t.fee_asset}"] for t in account.trades
            if any(r.occurred_at.replace(microsecond=0) == dt.datetime.fromtimestamp(t.timestamp // 1000, dt.UTC)
                   for r in synced)]
    rows.append(["2019-05-06 07:08:09", "ETHUSDT", "SELL", "250.5", "2ETH", "501USDT", "0.501USDT"])
    path = tmp_path / "binance-trades.csv"
    path.write_text(csv_text(header, rows))
    done = vigatra(write_config(sta, tmp_path / "vigatra.yaml"), "import", "statement", "--connection", str(cid),
                   str(path))
    assert done.returncode == 0, done.stderr
    trades = rows_of(sta, cid, "trades")
    assert len(trades) == len(synced) + 1
    (imported,) = [t for t in trades if t.provenance == "statement"]
    assert (imported.kind, imported.market, imported.amount) == ("sell", "ETH/USDT", Decimal("2"))


def test_kraken_ledger_export_fills_the_ledger_gap_of_a_recipe_key(sta: Any, sim: RunningSim, tmp_path: Path) -> None:
    key = sim.create_key("kraken", ["read"], history={"trades": 1, "deposits": 0, "withdrawals": 0})
    sim.control("POST", f"kraken/keys/{key['api_key']}/permission_strings",
                {"permissions": ["query-funds", "query-open-trades", "query-closed-trades"]})
    cid, _ = onboard(sta, sim, "kraken", key=key)
    assert run_cycle(sta.appliance).outcomes[0].ok
    header = ["txid", "refid", "time", "type", "subtype", "aclass", "asset", "wallet", "amount", "fee", "balance"]
    rows = [["LDEP01-AAAAA-BBBBBB", "FREF01-AAAAA-BBBBBB", "2020-02-03 04:05:06.0000", "deposit", "", "currency",
             asset_id("BTC"), "spot / main", "1.5000000000", "0.0000000000", "1.5000000000"],
            ["LWDR01-AAAAA-BBBBBB", "FREF02-AAAAA-BBBBBB", "2021-02-03 04:05:06.0000", "withdrawal", "", "currency",
             asset_id("BTC"), "spot / main", "-0.5000000000", "0.0005000000", "0.9995000000"],
            ["LSTK01-AAAAA-BBBBBB", "FREF03-AAAAA-BBBBBB", "2021-03-03 04:05:06.0000", "staking", "", "currency",
             "DOT.S", "earn / bonded", "1.0000000000", "0", "1.0000000000"]]
    path = tmp_path / "ledgers.csv"
    path.write_text(csv_text(header, rows))
    today = dt.datetime.now(dt.UTC).date().isoformat()
    done = vigatra(write_config(sta, tmp_path / "vigatra.yaml"), "import", "statement", "--connection", str(cid),
                   "--from", "2020-01-01", "--to", today, str(path))
    assert done.returncode == 0, done.stderr
    assert "1 not recorded" in done.stdout  # the staking row: no stream of ours
    assert [(r.kind, r.amount, r.provenance) for r in rows_of(sta, cid, "deposits")] == [
        ("deposit", Decimal("1.5"), "statement")]
    assert [(r.kind, r.amount) for r in rows_of(sta, cid, "withdrawals")] == [("withdrawal", Decimal("0.5"))]
    with sta.store.read() as session:
        ledger_gaps = list(session.execute(select(CoverageInterval).where(
            CoverageInterval.connection_id == cid, CoverageInterval.reason == "venue_limitation")).scalars())
        assert len(ledger_gaps) == 2 and all(g.closed_at is not None for g in ledger_gaps)
        assert all("statement import" in g.detail for g in ledger_gaps)


def test_a_bad_statement_changes_nothing_and_names_the_line(sta: Any, sim: RunningSim, tmp_path: Path) -> None:
    cid, _key = onboard(sta, sim, "binance", history={"trades": 0, "deposits": 0, "withdrawals": 0})
    header = ["Date(UTC)", "Pair", "Side", "Price", "Executed", "Amount", "Fee"]
    path = tmp_path / "bad.csv"
    path.write_text(csv_text(header, [["2024-01-02 03:04:05", "BTCUSDT", "BUY", "40000", "0.1BTC", "4000USDT", ""],
                                      ["2024-01-02 03:04:06", "BTCUSDT", "HOLD", "40000", "0.1BTC", "4000USDT", ""]]))
    config = write_config(sta, tmp_path / "vigatra.yaml")
    done = vigatra(config, "import", "statement", "--connection", str(cid), str(path))
    assert done.returncode == 1
    assert "line 3" in done.stderr and "neither BUY nor SELL" in done.stderr
    coinbase = tmp_path / "coinbase.csv"
    coinbase.write_text("ID,Timestamp,Transaction Type,Asset,Quantity Transacted\n"
                        "x,2024-01-01 00:00:00 UTC,Buy,BTC,1\n")
    wrong = vigatra(config, "import", "statement", "--connection", str(cid), str(coinbase))
    assert wrong.returncode == 1 and "Coinbase statement" in wrong.stderr
    bad_date = vigatra(config, "import", "statement", "--connection", str(cid), "--from", "01/02/2024", str(path))
    assert bad_date.returncode == 2 and "--from" in bad_date.stderr
    with sta.store.read() as session:
        assert session.execute(select(func.count()).select_from(Transaction)).scalar_one() == 0
        assert session.execute(select(func.count()).select_from(StatementImport)).scalar_one() == 0


def test_upload_on_the_employee_page(sta: Any, sim: RunningSim) -> None:
    cid, _key = onboard(sta, sim, "coinbase", history={"trades": 0, "deposits": 0, "withdrawals": 0})
    assert run_cycle(sta.appliance).outcomes[0].ok
    statement = ("You can use this transaction report to inform your likely tax obligations.\n\n"
                 "Transactions\nUser,Employee,0123\n"
                 "ID,Timestamp,Transaction Type,Asset,Quantity Transacted,Price Currency,Price at Transaction,"
                 "Subtotal,Total (inclusive of fees and/or spread),Fees and/or Spread,Notes\n"
                 "65a1,2022-05-06 07:08:09 UTC,Receive,ETH,0.75,USD,$2000.00,$1500.00,$1500.00,$0.00,From a wallet\n"
                 '65a2,2022-06-06 07:08:09 UTC,Advanced Trade Buy,BTC,0.01,USD,"$30,000.00",$300.00,$301.80,$1.80,\n')
    client = https_client(sta)
    login_session(client, sta, "alice")
    employee_id = connection(sta, cid).employee_id
    page = client.get(f"/employees/{employee_id}").get_data(as_text=True)
    assert "Import a statement" in page
    response = client.post(f"/connections/{cid}/statements", data={
        "csrf_token": csrf_of(client), "file": (io.BytesIO(statement.encode()), "coinbase.csv")},
        content_type="multipart/form-data")
    assert response.status_code == 302, response.get_data(as_text=True)
    assert [(r.kind, r.amount, r.provenance) for r in rows_of(sta, cid, "deposits")] == [
        ("deposit", Decimal("0.75"), "statement")]
    (buy,) = rows_of(sta, cid, "trades")
    assert (buy.kind, buy.price, buy.fee_amount) == ("buy", Decimal("30000.00"), Decimal("1.80"))
    page = client.get(f"/employees/{employee_id}").get_data(as_text=True)
    assert "coinbase.csv (coinbase_transactions)" in page and "2 added" in page
    refused = client.post(f"/connections/{cid}/statements", data={
        "csrf_token": csrf_of(client), "file": (io.BytesIO(b"not,a,statement\n1,2,3\n"), "x.csv")},
        content_type="multipart/form-data")
    assert refused.status_code == 400
    with sta.store.read() as session:
        assert session.execute(select(func.count()).select_from(StatementImport)).scalar_one() == 1
