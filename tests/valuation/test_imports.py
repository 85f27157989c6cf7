"""`vigatra prices import`: the documented CSV format, strict validation, and imported prices used like fetched
ones (marked imported) when the venue cannot be reached. Both databases."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from appliance.errors import Invalid
from appliance.services.valuation.imports import import_prices, parse
from appliance.store.models import PriceObservation, Transaction, TransactionValue
from tests.support.sim import RunningSim
from tests.sync.conftest import onboard, vigatra, write_config
from tests.valuation.conftest import add_trade, api_get, employee_of, poll, price, set_balances

HEADER = "asset,currency,time,price,source\n"
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_documented_format_is_read_exactly() -> None:
    data = (HEADER + "BTC,USD,2026-01-05T00:00:00Z,43125.50,ECB reference rates\n"
            "eth,eur,2026-01-05T16:00:00+01:00,2250.1,Bloomberg BGN\n"
            "USDT,USD,2026-01-05,1.0002,custodian statement\n").encode()
    rows = parse(data, now=NOW)
    assert [(r.asset, r.currency, r.at, r.price, r.source) for r in rows] == [
        ("BTC", "USD", dt.datetime(2026, 1, 5, tzinfo=dt.UTC), Decimal("43125.50"), "import:ECB reference rates"),
        ("ETH", "EUR", dt.datetime(2026, 1, 5, 15, tzinfo=dt.UTC), Decimal("2250.1"), "import:Bloomberg BGN"),
        ("USDT", "USD", dt.datetime(2026, 1, 5, tzinfo=dt.UTC), Decimal("1.0002"), "import:custodian statement"),
    ]
    # Columns in any order, header case-insensitive, a BOM and CRLF line ends.
    reordered = "\ufeffSource,Price,Time,Currency,Asset\r\nfix,1.5,2026-01-05T00:00:00Z,USD,SOL\r\n".encode()
    assert parse(reordered, now=NOW)[0].price == Decimal("1.5")


@pytest.mark.parametrize(("line", "message"), [
    ("BTC,USD,2026-01-05 10:00:00,43000,x", "has no time zone: write Z for UTC"),
    ("BTC,USD,2027-01-05T10:00:00Z,43000,x", "is in the future"),
    ("BTC,USD,yesterday,43000,x", "is not an ISO 8601 time"),
    ("BTC,USD,2026-01-05T10:00:00Z,\"43,000.00\",x", "is not a plain decimal"),
    ("BTC,USD,2026-01-05T10:00:00Z,4.3e4,x", "is not a plain decimal"),
    ("BTC,USD,2026-01-05T10:00:00Z,-5,x", "is not a plain decimal"),
    ("BTC,USD,2026-01-05T10:00:00Z,0,x", "must be greater than zero"),
    ("BTC,BTC,2026-01-05T10:00:00Z,1,x", "asset and currency are both BTC"),
    ("B TC,USD,2026-01-05T10:00:00Z,1,x", "asset 'B TC' is not a code"),
    ("BTC,USD,2026-01-05T10:00:00Z,1,", "source must be 1 to 64 characters"),
    ("BTC,USD,2026-01-05T10:00:00Z,1", "4 field(s); the header names 5"),
])
def test_bad_rows_are_named_by_line_and_nothing_is_imported(line: str, message: str) -> None:
    data = (HEADER + "ETH,USD,2026-01-05T00:00:00Z,2250,ok\n" + line + "\n").encode()
    with pytest.raises(Invalid) as caught:
        parse(data, now=NOW)
    assert caught.value.message.startswith("nothing was imported: 1 bad row(s): line 3: ")
    assert message in caught.value.message
    assert caught.value.detail["errors"] == [{"line": 3, "message": caught.value.message.split("line 3: ", 1)[1]}]


@pytest.mark.parametrize(("data", "message"), [
    (b"", "the file is empty"),
    (b"asset,currency,time,price\nBTC,USD,2026-01-05,1\n", "(missing source)"),
    (HEADER.replace("source", "source,notes").encode(), "(unknown 'notes')"),
    (HEADER.encode(), "the file has no rows"),
    (b"asset,currency,time,price,source\nBTC,USD,2026-01-05,1,caf\xe9\n", "line 2 is not UTF-8 text"),
])
def test_unusable_files_are_refused_clearly(data: bytes, message: str) -> None:
    with pytest.raises(Invalid, match="nothing was imported") as caught:
        parse(data, now=NOW)
    assert message in caught.value.message


def test_a_row_repeated_in_the_file_is_refused() -> None:
    data = (HEADER + "BTC,USD,2026-01-05T00:00:00Z,1,a\nBTC,USD,2026-01-05T01:00:00+01:00,2,a\n").encode()
    with pytest.raises(Invalid, match=r"line 3: repeats line 2 \(same asset, currency, time and source\)"):
        parse(data, now=NOW)


def test_import_stores_once_and_never_rewrites_a_price(store: Any) -> None:
    data = (HEADER + "BTC,USD,2026-01-05T00:00:00Z,43125.50,ECB\nETH,USD,2026-01-05T00:00:00Z,2250,ECB\n").encode()
    with store.unit_of_work() as session:
        first = import_prices(session, data, now=NOW)
    assert (first.added, first.unchanged, first.sources) == (2, 0, ("ECB",))
    with store.unit_of_work() as session:
        again = import_prices(session, data, now=NOW)
    assert (again.added, again.unchanged) == (0, 2), "importing the same file again changes nothing"
    changed = data.replace(b"43125.50", b"43000")
    with pytest.raises(Invalid, match=r"line 2: BTC/USD at 2026-01-05T00:00:00Z from 'ECB' is already stored as "
                                      r"43125\.50?; a stored price is never changed"), store.unit_of_work() as session:
        import_prices(session, changed + b"SOL,USD,2026-01-05T00:00:00Z,98,ECB\n", now=NOW)
    with store.read() as session:
        rows = session.execute(select(PriceObservation.asset, PriceObservation.price, PriceObservation.source,
                                      PriceObservation.kind).order_by(PriceObservation.asset)).all()
    assert rows == [("BTC", Decimal("43125.50"), "import:ECB", "import"),
                    ("ETH", Decimal("2250"), "import:ECB", "import")]


def test_the_cli_imports_and_reports_bad_lines(sta: Any, tmp_path: Path) -> None:
    config = write_config(sta, tmp_path / "vigatra.yaml")
    good = tmp_path / "prices.csv"
    good.write_text(HEADER + "BTC,USD,2026-01-05T00:00:00Z,43125.50,ECB\n")
    done = vigatra(config, "prices", "import", str(good))
    assert done.returncode == 0, done.stderr
    assert "imported 1 price(s) (0 already stored) from prices.csv" in done.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "BTC,USD,2026-01-05T00:00:00,1,ECB\nETH,USD,2026-01-05,x,ECB\n")
    refused = vigatra(config, "prices", "import", str(bad))
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "vigatra: nothing was imported: 2 bad row(s)",
        "  line 2: time '2026-01-05T00:00:00' has no time zone: write Z for UTC (2026-01-05T10:00:00Z) or an offset",
        "  line 3: price 'x' is not a plain decimal such as 43125.50",
    ]
    with sta.store.read() as session:
        assert session.execute(select(func.count()).select_from(PriceObservation)).scalar_one() == 1
        from appliance.store.models import AuditEvent

        events = session.execute(select(AuditEvent.action, AuditEvent.detail).where(
            AuditEvent.action == "prices.import")).all()
    assert len(events) == 1 and '"added": 1' in events[0][1] and '"sha256": ' in events[0][1]


def test_imported_prices_are_used_when_the_venue_is_unreachable(sta_factory: Any, sim: RunningSim,
                                                                tmp_path: Path) -> None:
    sta = sta_factory(valuation={"venues": ["kraken", "import"]})
    cid, key = onboard(sta, sim, "kraken", history={"trades": 0, "deposits": 0, "withdrawals": 0})
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    traded = now - dt.timedelta(hours=3)
    add_trade(sim, "kraken", key["api_key"], base="BTC", quote="USD", side="buy", amount="0.5", price="40000",
              fee="0", fee_asset="USD", timestamp=int(traded.timestamp() * 1000))
    set_balances(sim, "kraken", key["api_key"], {"BTC": "2", "USDT": "100"})
    poll(sta, cid)

    sheet = tmp_path / "custodian.csv"
    fixed = now - dt.timedelta(hours=5)
    sheet.write_text(HEADER + f"BTC,USD,{stamp(fixed)},50000.00,Custodian feed\n"
                              f"USDT,USD,{stamp(fixed)},0.9990,Custodian feed\n")
    done = vigatra(write_config(sta, tmp_path / "vigatra.yaml"), "--debug", "prices", "import", str(sheet))
    assert done.returncode == 0, done.stderr

    sim.control("POST", "kraken/faults", {"outage": True})
    result = price(sta)
    assert result.assets_unpriced == [] and result.transactions_unpriced == 0

    items = {i["asset"]: i for i in api_get(sta, f"/employees/{employee_of(sta, cid)}/balances")["balances"]}
    assert Decimal(items["BTC"]["price"]) == 50000 and Decimal(items["BTC"]["value"]) == 100000
    assert items["BTC"]["price_source"] == "import:Custodian feed"
    assert items["BTC"]["price_route"] == "BTC/USD import:Custodian feed"
    assert Decimal(items["USDT"]["price"]) == Decimal("0.999"), "an imported stablecoin price, not an assumed 1"
    with sta.store.read() as session:
        value = session.execute(select(TransactionValue).join(Transaction).where(
            Transaction.connection_id == cid)).scalars().one()
        session.expunge(value)
    assert value.price == Decimal("50000.00") and value.value == Decimal("25000.0000")
    assert value.source == "import:Custodian feed" and value.priced_at == fixed
