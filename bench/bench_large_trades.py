"""Recent large trades (services/firm.py): the time of one page as the trade history grows, on SQLite, against
a baseline in the same run — the newest page of one employee's transactions (records.transactions), the
employee page's own query.

    .venv/bin/python bench/bench_large_trades.py --transactions 2000000 --large-share 0.01

Each figure is the mean of five pages after a first one; "nothing qualifies" asks for a threshold no trade
reaches, so the page looks at its maximum (firm.MAX_SCANNED trades) and stops.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session

from appliance.rbac.actors import system_actor
from appliance.services import firm, records
from appliance.settings import settings_from_mapping
from appliance.store.base import Base
from appliance.store.models import Connection, Employee, Transaction, TransactionValue

EMPLOYEES = 1000


def seed(path: Path, transactions: int, share: float) -> None:
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    now = dt.datetime.now(dt.UTC)
    rng = random.Random(1)
    with Session(engine) as s:
        s.execute(insert(Employee), [{"id": i, "name": f"E{i}", "email": f"e{i}@x.example"}
                                     for i in range(1, EMPLOYEES + 1)])
        s.execute(insert(Connection), [{"id": i, "employee_id": i, "kind": "exchange", "venue": "kraken"}
                                       for i in range(1, EMPLOYEES + 1)])
        for start in range(0, transactions, 20000):
            ids = range(start + 1, min(transactions, start + 20000) + 1)
            s.execute(insert(Transaction), [{
                "id": i, "connection_id": 1 + i % EMPLOYEES, "stream": "trades", "venue_tx_id": str(i),
                "kind": "buy" if i % 2 else "sell", "asset": "BTC", "amount": Decimal("0.1"),
                "occurred_at": now - dt.timedelta(seconds=15 * i)} for i in ids])
            s.execute(insert(TransactionValue), [{
                "transaction_id": i, "currency": "USD", "value": Decimal(20000 if rng.random() < share else 500)}
                for i in ids])
        s.commit()
    engine.dispose()


def timed(run: object) -> float:
    assert callable(run)
    run()
    start = time.perf_counter()
    for _ in range(5):
        run()
    return (time.perf_counter() - start) / 5 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=200_000)
    parser.add_argument("--large-share", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "bench.db"
        seed(path, args.transactions, args.large_share)
        engine = create_engine(f"sqlite:///{path}")
        settings = settings_from_mapping({"data_dir": scratch}, env={}, source="bench")
        actor = system_actor("bench")
        with Session(engine) as s:
            base = timed(lambda: records.transactions(s, actor, employee_id=7, limit=50))
            page = timed(lambda: firm.large_trades(s, actor, settings))
            none = timed(lambda: firm.large_trades(s, actor, settings, threshold=Decimal(10**12)))
        print(f"{args.transactions:,} transactions, {args.large_share:.1%} worth 10,000 USD or more (SQLite)")
        print(f"  baseline, an employee's newest 50 transactions: {base:.0f} ms")
        print(f"  large trades, a page of 50:                     {page:.0f} ms ({page / base:.1f}x)")
        print(f"  large trades, nothing qualifies (page stops):   {none:.0f} ms ({none / base:.1f}x)")


if __name__ == "__main__":
    main()
