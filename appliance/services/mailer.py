"""The mail outbox: queue an e-mail in the unit of work that decided to send it; deliver it after
that unit of work committed. The one way the appliance sends mail (alerts, assignments, onboarding
links, and later sign-in links, pre-clearance decisions, attestation reminders).

- ``Mailer.queue(session, to=..., subject=..., text=..., purpose=...)`` writes a ``mail_outbox`` row
  in the caller's transaction, with the body sealed (it may carry a one-time link). A rolled-back
  change leaves no row, so nothing is ever sent for a change that did not happen.
- After the commit, the session's ``after_commit`` event wakes the delivery thread (``start()``, run
  by ``vigatra serve``); the same thread sweeps every 30 seconds (``deliver_pending``), so whatever a
  wake-up missed, or another node queued, is delivered. The CLI delivers at the end of its command.
- Delivery claims a row with a conditional UPDATE (several nodes may sweep), sends outside any
  transaction, then records the outcome: sent (the sealed body is dropped: recipients, subject and
  time stay as the record), retried later with growing pauses, or failed after
  ``notifications.smtp.max_attempts`` (shown on the System page). A node that dies mid-send lets its
  claim expire and the mail is sent again: at least once, never silently lost.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, func, or_, select, update
from sqlalchemy.orm import Session

from appliance.errors import Invalid, KeyProviderError
from appliance.mail import Mail, MailError, SmtpRelay, check_address, compose
from appliance.store.base import utcnow
from appliance.store.models import MailOutbox

if TYPE_CHECKING:
    from appliance.services.context import Appliance

log = logging.getLogger(__name__)

CLAIM = dt.timedelta(minutes=5)
SWEEP_SECONDS = 30.0
_WAKE_KEY = "vigatra.mail_wake"


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


class Mailer:
    def __init__(self, app: Appliance) -> None:
        self.app = app
        self.relay = SmtpRelay(app.settings.notifications.smtp, self._password)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.relay.configured

    def _password(self) -> str:
        return self.app.keys.provider.secret(self.app.settings.notifications.smtp.password_secret)

    # -- queuing ---------------------------------------------------------------------------------------
    def queue(self, session: Session, *, to: Iterable[str], subject: str, text: str, purpose: str,
              alert_id: int | None = None) -> MailOutbox | None:
        """Queue one e-mail in the caller's transaction. None when no relay is configured (the caller
        decides whether that is an error: an explicit "e-mail this link" is, an alert notice is not)."""
        if not self.enabled:
            return None
        recipients = sorted({check_address(a).lower() for a in to if a})
        if not recipients:
            return None
        Mail(tuple(recipients), subject, text)  # shape only; composed at delivery
        if "\n" in subject or "\r" in subject:
            raise Invalid("an e-mail subject is one line", field="subject")
        row = MailOutbox(purpose=purpose[:32], recipients=recipients, subject=" ".join(subject.split())[:300],
                         alert_id=alert_id, next_attempt_at=utcnow())
        session.add(row)
        session.flush()
        row.body_sealed = self.app.keys.seal(session, text, table="mail_outbox", column="body_sealed", row_id=row.id)
        if not session.info.get(_WAKE_KEY):
            session.info[_WAKE_KEY] = True
            event.listen(session, "after_commit", self._after_commit, once=True)
            event.listen(session, "after_rollback", self._forget, once=True)
        return row

    def _after_commit(self, session: Session) -> None:
        session.info.pop(_WAKE_KEY, None)
        self._wake.set()

    @staticmethod
    def _forget(session: Session) -> None:
        session.info.pop(_WAKE_KEY, None)

    # -- delivering ------------------------------------------------------------------------------------
    def _claim(self, limit: int) -> list[int]:
        now = utcnow()
        node = self.app.node_id
        with self.app.store.queued_unit_of_work() as session:
            ids = list(session.execute(select(MailOutbox.id).where(
                MailOutbox.status == "pending", MailOutbox.next_attempt_at <= now,
                or_(MailOutbox.claimed_until.is_(None), MailOutbox.claimed_until < now)).order_by(
                MailOutbox.id).limit(limit).with_for_update(skip_locked=True)).scalars())
            claimed = []
            for mail_id in ids:
                result = session.execute(update(MailOutbox).where(
                    MailOutbox.id == mail_id, MailOutbox.status == "pending",
                    or_(MailOutbox.claimed_until.is_(None), MailOutbox.claimed_until < now)).values(
                    claimed_by=node, claimed_until=now + CLAIM))
                if getattr(result, "rowcount", 0):
                    claimed.append(mail_id)
        return claimed

    def deliver_pending(self, limit: int = 50) -> DeliveryReport:
        """Send what is due, oldest first. Safe on several nodes at once."""
        report = DeliveryReport()
        if not self.enabled:
            return report
        for mail_id in self._claim(limit):
            self._deliver(mail_id, report)
        return report

    def _deliver(self, mail_id: int, report: DeliveryReport) -> None:
        settings = self.app.settings.notifications.smtp
        with self.app.store.read() as session:
            row = session.get(MailOutbox, mail_id)
            if row is None or row.body_sealed is None:
                return
            recipients, subject, sealed = list(row.recipients), row.subject, row.body_sealed
            try:
                text = self.app.keys.open_text(session, sealed, table="mail_outbox", column="body_sealed",
                                               row_id=mail_id)
            except Exception as exc:  # noqa: BLE001 - an integrity failure or a missing key: recorded below
                text, problem = None, f"the sealed body cannot be opened ({type(exc).__name__})"
        error: MailError | None = None
        if text is None:
            error = MailError(problem, permanent=True)
        else:
            try:
                self.relay.send(compose(Mail(tuple(recipients), subject, text), settings.sender))
            except MailError as exc:
                error = exc
            except KeyProviderError as exc:
                error = MailError(f"the SMTP password is unavailable: {exc.message}")
        now = utcnow()
        with self.app.store.queued_unit_of_work() as session:
            row = session.get(MailOutbox, mail_id)
            if row is None:
                return
            row.attempts += 1
            row.claimed_by = row.claimed_until = None
            if error is None:
                row.status, row.sent_at, row.body_sealed, row.last_error = "sent", now, None, ""
                report.sent.append(mail_id)
                log.info("mail %s (%s) sent to %d recipient(s)", mail_id, row.purpose, len(recipients))
                return
            row.last_error = error.message[:300]
            if error.permanent or row.attempts >= settings.max_attempts:
                row.status = "failed"
                row.body_sealed = None
                report.failed.append(mail_id)
                log.warning("mail %s (%s) failed: %s", mail_id, row.purpose, error.message)
            else:
                row.next_attempt_at = now + dt.timedelta(seconds=min(30 * 2 ** (row.attempts - 1), 3600))
                report.retrying.append(mail_id)
                log.warning("mail %s (%s) not sent yet (attempt %d): %s", mail_id, row.purpose, row.attempts,
                            error.message)

    # -- the delivery thread -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None or not self.enabled:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mail", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(SWEEP_SECONDS)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                while len(self.deliver_pending().sent) == 50:
                    pass
            except Exception as exc:  # noqa: BLE001 - the thread must survive a database outage; retried next time
                log.warning("mail delivery failed: %s", type(exc).__name__)


def status(session: Session) -> dict[str, Any]:
    """Counts by status and the latest failures, for the System page."""
    counts = dict(session.execute(select(MailOutbox.status, func.count()).group_by(MailOutbox.status)).all())
    failures = list(session.execute(select(MailOutbox).where(MailOutbox.status == "failed").order_by(
        MailOutbox.id.desc()).limit(5)).scalars())
    return {"counts": {str(k): int(v) for k, v in counts.items()}, "failures": failures}
