"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives: STARTTLS with a certificate
made by the test, and SMTP AUTH checked against a user name and password the test chooses."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.proc import free_port
from tests.support.tls import make_certificate


@dataclass
class Received:
    envelope_from: str
    recipients: list[str]
    message: EmailMessage
    authenticated_as: str | None
    tls: bool

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())


@dataclass
class MailServer:
    host: str
    port: int
    ca_file: Path | None
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)


class _Handler:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        with self.server.lock:
            self.server.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message,
                                                 login, session.ssl is not None))
        return "250 OK"


@contextmanager
def smtp_server(directory: Path, *, tls: bool = True, login: tuple[str, str] | None = None) -> Iterator[MailServer]:
    """An SMTP server on 127.0.0.1; with ``tls`` it offers STARTTLS (and requires it), with ``login`` it
    requires AUTH with that user and password."""
    ca_file = None
    kwargs: dict[str, Any] = {}
    if tls:
        directory.mkdir(parents=True, exist_ok=True)
        cert = make_certificate(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert.cert_path, cert.key_path)
        kwargs.update(tls_context=context, require_starttls=True)
        ca_file = cert.cert_path
    if login is not None:
        user, password = login

        def authenticate(_server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == password
            return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

        # PLAIN only: smtplib tries LOGIN after a refused PLAIN, and aiosmtpd waits for its second line.
        kwargs.update(authenticator=authenticate, auth_required=True, auth_require_tls=tls,
                      auth_exclude_mechanism=["LOGIN"])
    server = MailServer("127.0.0.1", free_port(), ca_file)
    controller = Controller(_Handler(server), hostname=server.host, port=server.port, **kwargs)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
