"""The unsigned tail of the audit chain stays short, and `audit verify` says how long it is.

Security review, finding 10 (second half): events after the newest signed checkpoint are held by the
hash chain alone, which whoever can write the database can recompute; checkpoints came once an hour.
Now new events are signed within 5 minutes (the checkpoint job runs that often and signs when the
chain moved, and still attests silence every audit.checkpoint_minutes), and at every clean shutdown;
`vigatra audit verify` warns about the unanchored tail with its size.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select

from appliance.poller import jobs
from appliance.settings import settings_from_mapping
from appliance.store.models import AuditChainHead, AuditCheckpoint
from tests.audit.conftest import add_events
from tests.support.proc import TLS, install, serve


def _checkpoints(store: Any) -> list[tuple[int, str]]:
    with store.read() as session:
        return [(int(r.last_event_id), r.detail) for r in session.execute(
            select(AuditCheckpoint).order_by(AuditCheckpoint.id)).scalars()]


def test_the_job_runs_every_five_minutes_at_most() -> None:
    for minutes in (60, 1440, 7):
        settings = settings_from_mapping({"audit": {"checkpoint_minutes": minutes}})
        (job,) = [j for j in jobs.extra_jobs(settings) if j.id == "audit_checkpoint"]
        assert job.seconds <= 300, minutes
    settings = settings_from_mapping({"audit": {"checkpoint_minutes": 2}})
    assert [j.seconds for j in jobs.extra_jobs(settings) if j.id == "audit_checkpoint"] == [120]


def test_the_job_signs_new_events_and_attests_silence(ta: Any) -> None:
    jobs.audit_checkpoint(ta.appliance)
    first = _checkpoints(ta.store)
    assert len(first) == 1
    jobs.audit_checkpoint(ta.appliance)  # nothing new, and the quiet period has not passed: nothing to sign
    assert _checkpoints(ta.store) == first
    add_events(ta.store, 3)
    jobs.audit_checkpoint(ta.appliance)
    with ta.store.read() as session:
        head = int(session.execute(select(AuditChainHead.last_id)).scalar_one())
    assert _checkpoints(ta.store)[-1][0] == head and len(_checkpoints(ta.store)) == 2
    # Silence: attested once the quiet period has passed (the job passes audit.checkpoint_minutes), never for
    # the shutdown's own checkpoint, which signs only what arrived.
    from appliance.audit.checkpoints import checkpoint_if_due

    assert checkpoint_if_due(ta.appliance, quiet_after=None) is None
    assert checkpoint_if_due(ta.appliance, quiet_after=dt.timedelta(0)) is not None
    assert len(_checkpoints(ta.store)) == 3


def test_a_clean_shutdown_signs_the_tail_and_verify_reports_what_is_unsigned(tmp_path: Path,
                                                                            empty_db_url: str) -> None:
    installed = install(tmp_path, empty_db_url)
    server = serve(installed)
    try:
        verify = installed.run("audit", "verify")
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
        while "checkpoints (no checkpoint yet" in verify.stdout and dt.datetime.now(dt.UTC) < deadline:
            verify = installed.run("audit", "verify")  # the job's first run, a few seconds after start
        for _ in range(3):  # audited refusals: events after that checkpoint
            requests.post(f"{server.url}/api/v1/auth/token", headers=TLS, timeout=10,
                          json={"username": "admin", "password": "not the password at all"})
        before = installed.run("audit", "verify")
        match = re.search(r"^warning: (\d+) event\(s\) are not anchored by a signature", before.stderr, re.M)
        assert match and int(match.group(1)) >= 3, before.stderr
    finally:
        assert server.stop() == 0
    after = installed.run("audit", "verify")
    assert "warning:" not in after.stderr, after.stderr
    assert "audit trail valid" in after.stdout
    with installed_store(installed) as store:
        assert '"reason":"shutdown"' in _checkpoints(store)[-1][1]
        with store.read() as session:
            assert session.execute(select(func.count()).select_from(AuditCheckpoint)).scalar_one() >= 2


def installed_store(installed: Any) -> Any:
    import contextlib

    from appliance.settings import load_settings
    from appliance.store.session import Store

    @contextlib.contextmanager
    def opened() -> Any:
        store = Store.from_settings(load_settings(installed.config, env=installed.env))
        try:
            yield store
        finally:
            store.dispose()

    return opened()
