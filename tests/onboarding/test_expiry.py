"""A link that expires unused is audited once, by the poller job (generation and use are audited as
they happen)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update

from appliance.rbac.actors import system_actor
from appliance.services import employees, onboarding
from appliance.store.models import AuditEvent, OnboardingToken


def test_expiry_is_audited_once(ta: Any) -> None:
    with ta.store.unit_of_work() as session:
        person = employees.create(session, name="Exp Ired", email="expired@example.com")
        expired, _ = onboarding.create_link(session, system_actor("t"), ta.settings, person.id)
        finished, _ = onboarding.create_link(session, system_actor("t"), ta.settings, person.id)
        live, _ = onboarding.create_link(session, system_actor("t"), ta.settings, person.id)
        past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        session.execute(update(OnboardingToken).where(OnboardingToken.id.in_([expired.id, finished.id]))
                        .values(expires_at=past))
        session.execute(update(OnboardingToken).where(OnboardingToken.id == finished.id)
                        .values(completed_at=past - dt.timedelta(minutes=1)))
        ids = (expired.id, live.id)
    with ta.store.unit_of_work() as session:
        assert onboarding.audit_expired_links(session) == 1
    with ta.store.unit_of_work() as session:
        assert onboarding.audit_expired_links(session) == 0
    with ta.store.read() as session:
        events = list(session.execute(select(AuditEvent.resource_id).where(
            AuditEvent.action == "onboarding.link_expired")).scalars())
    assert events == [str(ids[0])]
