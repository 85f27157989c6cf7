"""Composing one plain-text e-mail."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from appliance.errors import Invalid
from appliance.settings import ADDRESS


@dataclass(frozen=True)
class Mail:
    to: tuple[str, ...]
    subject: str
    text: str


def check_address(address: str, field: str = "to") -> str:
    text = address.strip() if isinstance(address, str) else ""
    if not ADDRESS.match(text) or len(text) > 254:
        raise Invalid(f"{text[:60]!r} is not an e-mail address", field=field)
    return text


def compose(mail: Mail, sender: str, *, now: dt.datetime | None = None) -> EmailMessage:
    """The message as the relay receives it. Addresses are checked and the subject is one line, so no
    header can be injected through either."""
    if not mail.to:
        raise Invalid("an e-mail needs at least one recipient", field="to")
    recipients = [check_address(a) for a in mail.to]
    subject = " ".join(mail.subject.split())
    if not subject or len(subject) > 300:
        raise Invalid("an e-mail subject is one line of 1 to 300 characters", field="subject")
    message = EmailMessage()
    message["From"] = check_address(sender, "sender")
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    # Tells mail systems this is machine-written: no out-of-office replies to the relay's sender.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(mail.text)
    return message
