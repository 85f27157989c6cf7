"""Handing a message to the customer's SMTP relay (smtplib: the standard library speaks SMTP,
STARTTLS and AUTH; nothing to add).

The relay is the one destination that is not a venue: it is the customer's own server, named in
``notifications.smtp.host`` and listed by ``vigatra egress``. STARTTLS verifies the relay's
certificate (the system's CAs or ``ca_file``) and a relay that does not offer STARTTLS is refused
rather than spoken to in clear. The password comes from the key provider at send time and is never
logged; errors carry the relay's reply code and the first words of its text, never credentials.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage

from appliance.errors import VigatraError
from appliance.settings import SmtpSettings


class MailError(VigatraError):
    """The relay did not take the message. ``permanent``: trying again will not help (a refused
    recipient, bad credentials, a relay without STARTTLS)."""

    code = "mail_error"
    http_status = 502

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {' '.join(text.split())[:120]}"


class SmtpRelay:
    def __init__(self, settings: SmtpSettings, password: Callable[[], str] | None = None) -> None:
        self.settings = settings
        self._password = password

    @property
    def configured(self) -> bool:
        return bool(self.settings.host)

    def describe(self) -> str:
        s = self.settings
        how = "STARTTLS" if s.starttls else "no TLS"
        auth = f", AUTH as {s.username}" if s.username else ""
        return f"{s.host}:{s.port} ({how}{auth})"

    def send(self, message: EmailMessage) -> None:
        s = self.settings
        if not s.host:
            raise MailError("no SMTP relay is configured (notifications.smtp.host)", permanent=True)
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds) as smtp:
                smtp.ehlo()
                if s.starttls:
                    if not smtp.has_extn("starttls"):
                        raise MailError(f"the relay {s.host}:{s.port} does not offer STARTTLS; refusing to send "
                                        "in clear (set notifications.smtp.starttls: false only for a loopback relay)",
                                        permanent=True)
                    context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if s.username:
                    if self._password is None:
                        raise MailError("SMTP AUTH is configured but no password source was given", permanent=True)
                    smtp.login(s.username, self._password())
                refused = smtp.send_message(message)
                if refused:
                    raise MailError(f"the relay refused {len(refused)} recipient(s): "
                                    + ", ".join(f"{a} ({c})" for a, (c, _t) in sorted(refused.items()))[:250],
                                    permanent=True)
        except MailError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise MailError(f"the relay refused the credentials of {s.username}: {_reply(exc)}",
                            permanent=True) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise MailError(f"the relay refused every recipient ({len(exc.recipients)})", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            raise MailError(f"the relay answered {_reply(exc)}", permanent=500 <= exc.smtp_code < 600) from None
        except ssl.SSLError as exc:
            raise MailError(f"TLS with the relay failed: {exc.reason or type(exc).__name__}", permanent=True) from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise MailError(f"cannot reach the relay {s.host}:{s.port}: {type(exc).__name__} "
                            f"{str(exc)[:120]}") from None
