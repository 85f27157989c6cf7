"""The poller's status for the CLI and the System page: connections by status, backlog, last cycles."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from appliance.services.context import Appliance
from appliance.services.sync.claiming import backlog
from appliance.store.models import Connection, PollCycle


@dataclass
class StatusReport:
    last_cycles: list[PollCycle]
    by_status: dict[str, int]
    backlog: int

    def lines(self) -> list[str]:
        lines = ["connections: " + (", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items())) or "none"),
                 f"backlog (due now): {self.backlog}"]
        if not self.last_cycles:
            lines.append("last cycle: none yet")
        for cycle in self.last_cycles:
            failures = "; ".join(f"{cls}: " + ", ".join(f"{v} {n}" for v, n in sorted(venues.items()))
                                 for cls, venues in sorted((cycle.failures or {}).items())) or "none"
            lines.append(f"cycle {cycle.started_at.isoformat(timespec='seconds')} on {cycle.node}: "
                         f"{cycle.polled} polled, {cycle.succeeded} ok, {cycle.duration_seconds or 0:.1f}s, "
                         f"failures {failures}")
        return lines


def status_report(app: Appliance, *, cycles: int = 5) -> StatusReport:
    with app.store.read() as session:
        last = list(session.execute(select(PollCycle).order_by(PollCycle.id.desc()).limit(cycles)).scalars())
        by_status = dict(session.execute(select(Connection.status, func.count()).group_by(Connection.status)).all())
        # Detached with their values loaded: the read session's rollback would expire them, and the CLI
        # and the System page read them after it ends.
        session.expunge_all()
    return StatusReport(last, {str(k): int(v) for k, v in by_status.items()}, backlog(app))
