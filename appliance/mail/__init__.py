"""Sending e-mail through the customer's SMTP relay: composing a message and handing it over.

A small capability with no database (like the venues): ``compose`` builds a plain-text message whose
headers cannot be injected into, and ``SmtpRelay`` delivers it with STARTTLS (certificate verified)
and optional SMTP AUTH, classifying failures as worth retrying or not. Queuing in the outbox and
delivering after the commit live in ``appliance.services.mailer``, which every feature that mails
(alerts, assignments, onboarding links, later sign-in links and reminders) goes through.
"""

from appliance.mail.message import Mail, check_address, compose
from appliance.mail.smtp import MailError, SmtpRelay

__all__ = ["Mail", "MailError", "SmtpRelay", "check_address", "compose"]
