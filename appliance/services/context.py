"""The composition root: one object holding the process's long-lived parts.

Built in three steps (STYLE.md habit 1): ``Appliance(settings)`` constructs and touches nothing;
``open()`` checks the key provider and loads DEKs and the auth state (queries); ``start()``
starts the background threads (audit group commit, revocation watcher). The web app, the poller
and the CLI all work through it.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from appliance.audit.writer import AuditRecord, GroupCommitter
from appliance.auth.state import AuthState, RevocationWatcher
from appliance.crypto import KeyProvider, provider_from_settings
from appliance.settings import Settings
from appliance.store.session import Store

log = logging.getLogger(__name__)


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
        self.node_id = f"{socket.gethostname()}:{id(self) & 0xFFFF:04x}"
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
