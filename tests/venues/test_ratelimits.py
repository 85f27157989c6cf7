"""The shared limiter's documented limits: windows (N units per period), buckets (Kraken's counter), weights,
per-account keys, deferral, and forgetting idle accounts. Times are given explicitly: nothing here sleeps."""

from __future__ import annotations

import pytest

from appliance.errors import EgressRefused
from appliance.venues.ratelimits import BudgetDeferred, DocumentedLimits, RateLimit, _Bucket, _Window, deferring


def test_a_window_admits_its_count_then_waits_for_the_oldest_to_leave() -> None:
    window = _Window(3, 60)
    for at in (0.0, 1.0, 2.0):
        assert window.wait_for(1, at) == 0.0
        window.take(1, at)
    assert window.wait_for(1, 10.0) == pytest.approx(50.0)  # the first leaves at 60
    assert window.wait_for(1, 60.0) == 0.0
    assert not window.idle(61.0) and window.idle(62.5)


def test_weights_spend_more_of_a_window() -> None:
    limit = RateLimit(6000, 60, weights=((r"/api/v3/(account|myTrades)", 20),))
    assert limit.weight("/api/v3/myTrades") == 20 and limit.weight("/sapi/v1/capital/deposit/hisrec") == 1
    window = _Window(limit.count, limit.seconds)
    for _ in range(300):
        window.take(limit.weight("/api/v3/myTrades"), 0.0)
    assert window.wait_for(1, 1.0) == pytest.approx(59.0)


def test_a_bucket_drains_at_its_rate() -> None:
    bucket = _Bucket(15, 15 / 0.33, updated=0.0)
    for _ in range(7):
        bucket.take(2, 0.0)
    assert bucket.wait_for(1, 0.0) == 0.0
    assert bucket.wait_for(2, 0.0) == pytest.approx(1 / 0.33)  # 14 + 2 = 16: one unit must drain first
    assert bucket.idle(100.0)


def test_limits_apply_by_path_and_account() -> None:
    limits = DocumentedLimits()
    per_account = (RateLimit(1, 60, path=r"/v1/transfers", per_account=True),)
    limits.acquire("gemini", per_account, "/v1/transfers", "a")
    limits.acquire("gemini", per_account, "/v1/transfers", "b")  # another account: its own budget
    limits.acquire("gemini", per_account, "/v1/balances", "a")  # another path: not limited here
    with deferring(0.5), pytest.raises(BudgetDeferred) as deferred:
        limits.acquire("gemini", per_account, "/v1/transfers", "a")
    assert deferred.value.wait > 50


def test_a_wait_beyond_the_maximum_is_refused() -> None:
    limits = DocumentedLimits(max_wait=0.1)
    one = (RateLimit(1, 3600),)
    limits.acquire("bitstamp", one, "/api/v2/account_balances/", "")
    with pytest.raises(EgressRefused):
        limits.acquire("bitstamp", one, "/api/v2/account_balances/", "")


def test_idle_accounts_are_forgotten() -> None:
    limits = DocumentedLimits()
    limits.SWEEP_EVERY = 1
    per_account = (RateLimit(100, 1e-6, per_account=True),)
    for account in ("a", "b", "c"):
        limits.acquire("bybit", per_account, "/v5/asset/deposit/query-record", account)
    assert len(limits._states) <= 1  # each sweep dropped the accounts whose window had emptied
