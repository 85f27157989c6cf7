"""Prometheus text exposition of the appliance's health (GET /metrics, behind system:read)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.store.models import Alert, AuditChainHead, Connection, CoverageInterval, PollCycle


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(app: Any, session: Session) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")

    by_status = session.execute(select(Connection.venue, Connection.status, func.count())
                                .group_by(Connection.venue, Connection.status)).all()
    metric("vigatra_connections", "gauge", "Connections by venue and status.",
           [({"venue": str(v), "status": str(s)}, float(n)) for v, s, n in by_status])
    gaps = session.execute(select(CoverageInterval.reason, func.count()).where(
        CoverageInterval.kind == "gap", CoverageInterval.closed_at.is_(None)).group_by(CoverageInterval.reason)).all()
    metric("vigatra_coverage_open_gaps", "gauge", "Coverage gaps not yet filled, by reason.",
           [({"reason": str(r)}, float(n)) for r, n in gaps])
    alerts = session.execute(select(Alert.severity, func.count()).where(Alert.status.in_(("open", "investigating")))
                             .group_by(Alert.severity)).all()
    metric("vigatra_alerts_open", "gauge", "Open alerts by severity.",
           [({"severity": str(s)}, float(n)) for s, n in alerts])
    head = session.get(AuditChainHead, 1)
    metric("vigatra_audit_events", "counter", "Audit events written (chain length).",
           [({}, float(head.last_id if head else 0))])
    cycle = session.execute(select(PollCycle).order_by(PollCycle.id.desc()).limit(1)).scalars().first()
    if cycle is not None:
        metric("vigatra_poll_last_cycle_seconds", "gauge", "Duration of the last polling cycle.",
               [({"node": cycle.node}, float(cycle.duration_seconds or 0))])
        metric("vigatra_poll_last_cycle_polled", "gauge", "Connections polled in the last cycle.",
               [({"node": cycle.node}, float(cycle.polled))])
        metric("vigatra_poll_last_cycle_backlog", "gauge", "Connections due after the last cycle.",
               [({"node": cycle.node}, float(cycle.backlog))])
        failures = [({"class": cls, "venue": venue}, float(n))
                    for cls, venues in (cycle.failures or {}).items() for venue, n in venues.items()]
        metric("vigatra_poll_last_cycle_failures", "gauge", "Failures in the last cycle by class and venue.", failures)
    committer = app.audit
    metric("vigatra_audit_group_commits", "counter", "Audit group commits by this process.",
           [({}, float(committer.batches))])
    return "\n".join(lines) + "\n"
