"""Scheduler jobs. Each is a plain function of the Appliance: small, idempotent, and safe to call
from the CLI or a test without a scheduler."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from appliance.services.context import Appliance
from appliance.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    id: str
    func: Callable[[Appliance], object]
    seconds: float
    first_run: dt.datetime | None = None


def flush_key_usage(appliance: Appliance) -> None:
    """Write API keys' last-used times, collected in memory by the edge, in one transaction."""
    from appliance.services import identity

    usage = appliance.auth.take_key_usage()
    if usage:
        with appliance.store.unit_of_work() as session:
            identity.record_key_usage(session, usage)


def prune_expired(appliance: Appliance) -> None:
    from appliance.services import login

    with appliance.store.unit_of_work() as session:
        login.prune_revoked_sessions(session)


def extra_jobs(settings: Settings) -> list[JobSpec]:
    """Jobs contributed by later capabilities (audit checkpoints, polling)."""
    return []
