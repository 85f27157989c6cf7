"""The background scheduler inside `vigatra serve`: construction here, one plain function per job
in jobs.py (each callable without the scheduler, taking the Appliance and ids, never ORM objects)."""

from __future__ import annotations

import logging

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from appliance.poller import jobs
from appliance.services.context import Appliance

log = logging.getLogger(__name__)


def build_scheduler(appliance: Appliance) -> BackgroundScheduler:
    settings = appliance.settings
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        timezone="UTC",
    )
    scheduler.add_job(jobs.flush_key_usage, "interval", seconds=60, args=[appliance], id="flush_key_usage")
    scheduler.add_job(jobs.prune_expired, "interval", minutes=30, args=[appliance], id="prune_expired")
    for spec in jobs.extra_jobs(settings):
        scheduler.add_job(spec.func, "interval", seconds=spec.seconds, args=[appliance], id=spec.id,
                          next_run_time=spec.first_run)
    return scheduler
