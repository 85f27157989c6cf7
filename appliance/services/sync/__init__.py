"""The sync engine: which connections are due, polling one, recording outcomes, health and coverage.

- Claiming: each node leases due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; a conditional
  update under SQLite's single writer). A lease expires after ``poller.lease_seconds``, so a dead
  node's connections are taken over; it is renewed with every commit of a sync (at least every third
  of the lease), and a sync whose lease another node took stops before calling the venue or writing,
  so no connection is polled by two nodes at once. A node gives back its own leftover leases at the
  start of each cycle (a cycle that died with the database), and a connection whose key was wiped is
  never claimed.
- Writing: venue calls happen outside transactions. A page with records is stored together with the
  stream's cursor in one transaction (idempotent on (connection, stream, venue id)), so a crash at any
  instant loses nothing and duplicates nothing. Pages without records, and the poll's observations,
  are held and written with the next commit (at the latest the one that records the outcome): losing
  them in a crash loses no record, and an incremental poll that finds nothing new costs two short
  transactions (check the lease, open the credentials, read the cursors; write the outcome) instead
  of one per page and stream. Balances and prediction positions are observations with
  validity intervals: a new row only when a value changes; ``observed_until`` moves forward on every
  successful poll. Nothing is ever deleted by a sync.
- Health: active / degraded (transient failures) / broken (authentication or permission failure, or
  too many failures) / reonboarding_required (broken with ``require_reonboarding_after_break``, or a key
  that gained dangerous permissions). An authentication failure turns the connection broken in the
  same poll and raises an alert.
- Coverage: per stream, one ``complete`` interval that grows with each successful page, and ``gap``
  intervals (with the reason) opened by a failed poll for every stream of the adapter and closed when
  a later poll fills them.
- Every outcome moves ``next_poll_at`` ahead (interval, backoff, retry-after), so a cycle never claims
  the same connection twice.
"""

from appliance.services.sync.claiming import POLLED, RED, backlog, claim_due, interval_for, release_stale_leases
from appliance.services.sync.connection import SyncOutcome, sync_connection
from appliance.services.sync.cycles import CycleResult, interval_for_id, request_sync, run_cycle
from appliance.services.sync.status import StatusReport, status_report
from appliance.services.sync.writes import insert_records, record_balances, record_positions, store_page

__all__ = [
    "POLLED",
    "RED",
    "CycleResult",
    "StatusReport",
    "SyncOutcome",
    "backlog",
    "claim_due",
    "insert_records",
    "interval_for",
    "interval_for_id",
    "record_balances",
    "record_positions",
    "release_stale_leases",
    "request_sync",
    "run_cycle",
    "status_report",
    "store_page",
    "sync_connection",
]
