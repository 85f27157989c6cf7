"""The composition root: one object holding the process's long-lived parts.

Built in three steps (STYLE.md habit 1): ``Appliance(settings)`` constructs and touches nothing;
``open()`` checks the key provider and loads DEKs and the auth state (queries); ``start()``
starts the background threads (audit group commit, revocation watcher). The web app, the poller
and the CLI all work through it.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

from appliance.audit.writer import AuditRecord, GroupCommitter
from appliance.auth.state import AuthState, RevocationWatcher
from appliance.crypto import KeyProvider, provider_from_settings
from appliance.settings import Settings
from appliance.store.probe import WriteProbe
from appliance.store.session import Store

log = logging.getLogger(__name__)


_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def node_identity() -> str:
    """A name for one poller node that no other process ever shares: host, boot, pid, start time, random.

    Leases are held by node id, and a node gives back every lease held under its id at the start of a
    cycle, so two processes sharing an id release each other's leases and poll the same connection at
    once. The host and pid say which process it is (the System page shows it); the boot id and start
    time keep a pid reused after a reboot or a restart apart; 32 random bits keep two Appliances of one
    process apart. At most 75 characters (``connections.lease_owner`` and ``poll_cycles.node`` hold 100).
    """
    try:
        boot = _BOOT_ID.read_text(encoding="ascii").strip().replace("-", "")[:8]
    except OSError:  # not Linux: pid, start time and the random part still tell processes apart
        boot = "noboot"
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{boot}.{int(time.time()):x}.{secrets.token_hex(4)}"


class Stopping:
    """Set when the process is asked to stop (SIGTERM): the poller claims nothing more; syncs in flight
    may finish, and once ``checkpoint_at`` has passed each stops at its next commit (what it stored
    stays, the rest resumes on the next poll) and gives its lease back."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.began_at: float | None = None  # time.monotonic() when asked to stop
        self.checkpoint_at: float | None = None

    def begin(self, grace_seconds: float) -> None:
        if not self._event.is_set():
            self.began_at = time.monotonic()
            self.checkpoint_at = self.began_at + grace_seconds
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def must_checkpoint(self) -> bool:
        return self.checkpoint_at is not None and time.monotonic() >= self.checkpoint_at


class Appliance:
    def __init__(self, settings: Settings, *, store: Store | None = None, provider: KeyProvider | None = None) -> None:
        from appliance.services.keys import KeyService
        from appliance.services.mailer import Mailer
        from appliance.services.rules.evaluate import RuleCache

        self.settings = settings
        self.store = store or Store.from_settings(settings)
        self.keys = KeyService(provider or provider_from_settings(settings))
        self.auth = AuthState()
        self.audit = GroupCommitter(self.store)
        self.node_id = node_identity()
        self.write_probe = WriteProbe(self.store, self.node_id)  # /healthz: does the store take writes?
        self.stopping = Stopping()
        self._watcher: RevocationWatcher | None = None
        self._venues: Any = None
        self._venues_lock = threading.Lock()
        self.opened = False
        self.mailer = Mailer(self)
        self.rule_cache = RuleCache()  # the conduct rules compiled, shared by the evaluations after syncs

    # -- lifecycle --------------------------------------------------------------------------------
    def open(self) -> Appliance:
        """Check the key provider, load the data keys and the auth state. Raises one-line errors."""
        self.keys.provider.check()
        with self.store.read() as session:
            self.keys.load(session)
        self.auth.load(self.store)
        self.opened = True
        return self

    def start(self) -> None:
        self.audit.start()
        self._watcher = RevocationWatcher(self.store, self.auth, self.settings.auth.revocation_poll_seconds)
        self._watcher.start()
        self.mailer.start()

    def stop(self) -> None:
        self.mailer.stop()
        if self._watcher is not None:
            self._watcher.stop()
        self.audit.stop()

    def close(self) -> None:
        self.stop()
        self.store.dispose()

    # -- shared parts -----------------------------------------------------------------------------
    @property
    def venues(self) -> Any:
        """The venue adapters, built on first use (importing ccxt costs a second or two, which CLI
        commands that never talk to a venue should not pay)."""
        with self._venues_lock:
            if self._venues is None:
                from appliance.venues.registry import VenueRegistry

                self._venues = VenueRegistry(self.settings)
            return self._venues

    def record(self, record: AuditRecord) -> int:
        """Write a security event through the independent audit path (survives a rollback)."""
        return self.audit.record(record)
