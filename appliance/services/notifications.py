"""What the appliance tells people by e-mail, and in what words.

E-mails cross the customer's mail system, which is wider than the appliance: they carry no employee
financial figure (no amount, value, price, holding or balance), no employee name and no asset, only
what kind of alert it is, its number, and a link to open it in the appliance (where access is checked
and audited). Onboarding e-mails go to the employee and carry their one-time link.

Called in the unit of work that raised or assigned the alert: the mails are queued in the outbox and
leave only after it commits (services/mailer.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.services.mailer import Mailer
from appliance.settings import Settings
from appliance.store.models import Alert, Rule, User

DIGEST_OVER = 5
RULE_LABELS = {"restricted": "restricted list breach", "watch": "watch list match", "holding_period":
               "holding period breach", "blackout": "blackout window breach", "threshold": "value threshold breach",
               "new_account": "transfer with an account never connected"}
KIND_LABELS = {"manual": "alert raised by hand", "connection_broken": "broken connection",
               "scope_escalation": "key permission escalation", "integrity_failure": "integrity failure",
               "inconsistent_data": "inconsistent venue data"}


def link(settings: Settings, path: str) -> str:
    base = settings.server.public_url.rstrip("/")
    return f"{base}{path}" if base else f"the appliance's address followed by {path}"


def category(session: Session, alert: Alert) -> str:
    if alert.rule_id is not None:
        kind = session.execute(select(Rule.kind).where(Rule.id == alert.rule_id)).scalar_one_or_none()
        return RULE_LABELS.get(kind or "", "rule breach")
    return KIND_LABELS.get(alert.kind, alert.kind.replace("_", " "))


def _footer() -> str:
    return ("\n\nThis message is sent by the Vigatra appliance. It carries no employee data: open the link to see "
            "the details (access is checked and recorded).\n")


def alerts_raised(session: Session, mailer: Mailer, settings: Settings, alert_ids: Sequence[int]) -> int:
    """Tell the compliance mailbox (and any assignee) of new critical alerts; many at once make one
    digest. Returns the number of e-mails queued."""
    if not mailer.enabled or not alert_ids:
        return 0
    alerts = list(session.execute(select(Alert).where(Alert.id.in_(list(alert_ids)),
                                                      Alert.severity == "critical").order_by(Alert.id)).scalars())
    if not alerts:
        return 0
    mailbox = list(settings.notifications.compliance_mailbox)
    if len(alerts) > DIGEST_OVER:
        if not mailbox:
            return 0
        mailer.queue(session, to=mailbox, purpose="alert", subject=f"[Vigatra] {len(alerts)} new critical alerts",
                     text=(f"{len(alerts)} new critical alerts were raised in Vigatra (numbers {alerts[0].id} to "
                           f"{alerts[-1].id}).\n\nOpen the alert queue: {link(settings, '/alerts?status=open')}"
                           + _footer()))
        return 1
    queued = 0
    for alert in alerts:
        recipients = list(mailbox)
        assignee = session.get(User, alert.assigned_to) if alert.assigned_to else None
        if assignee is not None and assignee.email:
            recipients.append(assignee.email)
        if not recipients:
            continue
        what = category(session, alert)
        mailer.queue(session, to=recipients, purpose="alert", alert_id=alert.id,
                     subject=f"[Vigatra] Critical alert #{alert.id}: {what}",
                     text=(f"A new critical alert was raised in Vigatra: #{alert.id}, {what}.\n\n"
                           f"Open it: {link(settings, f'/alerts/{alert.id}')}" + _footer()))
        queued += 1
    return queued


def assigned(session: Session, mailer: Mailer, settings: Settings, alert: Alert, by: str) -> int:
    """Tell the new assignee (and the compliance mailbox) that a case was assigned."""
    if not mailer.enabled or alert.assigned_to is None:
        return 0
    assignee = session.get(User, alert.assigned_to)
    recipients = list(settings.notifications.compliance_mailbox)
    if assignee is not None and assignee.email:
        recipients.append(assignee.email)
    if not recipients:
        return 0
    who = (assignee.display_name or assignee.username) if assignee is not None else "someone"
    what = category(session, alert)
    mailer.queue(session, to=recipients, purpose="assignment", alert_id=alert.id,
                 subject=f"[Vigatra] Alert #{alert.id} assigned to {who}",
                 text=(f"Alert #{alert.id} ({alert.severity}, {what}) was assigned to {who} by {by}.\n\n"
                       f"Open it: {link(settings, f'/alerts/{alert.id}')}" + _footer()))
    return 1


def onboarding_link(session: Session, mailer: Mailer, settings: Settings, *, to: str, name: str, url: str,
                    expires_at: dt.datetime, purpose: str) -> None:
    """The employee's one-time link, sent to them. Raises Conflict when no relay is configured."""
    from appliance.errors import Conflict

    if not mailer.enabled:
        raise Conflict("e-mail is not configured on this appliance (notifications.smtp.host): copy the link and "
                       "send it yourself")
    why = ("connect your accounts again: one of your connections needs a new read-only key"
           if purpose == "reonboard" else "connect the accounts, wallets and prediction-market accounts you "
           "trade with (read-only access only: the appliance can never move funds)")
    mailer.queue(session, to=[to], purpose="onboarding", subject="Your compliance team asks you to connect your "
                 "trading accounts",
                 text=(f"Hello {name},\n\nyour compliance team asks you to {why}.\n\nOpen this link in your browser: "
                       f"{url}\n\nIt works once, in one browser, and expires on "
                       f"{expires_at.astimezone(dt.UTC).strftime('%Y-%m-%d %H:%M')} UTC. If you did not expect this "
                       "message, tell your compliance team and do not open the link.\n"))
