"""One authenticated ccxt client per sync, never more widely: inside ``reusing(creds)`` the pages of a
sync share the client built for those credentials; other credentials, other threads and anything
outside the scope get fresh ones, and the client (holding the secret) is dropped when the scope ends."""

from __future__ import annotations

import threading
from typing import Any

from appliance.venues.base import Credentials
from appliance.venues.registry import VenueRegistry
from tests.support.sim import RunningSim


def test_a_client_is_reused_only_inside_its_scope(registry: VenueRegistry, sim: RunningSim) -> None:
    adapter: Any = registry.get("kraken")
    key = sim.create_key("kraken", ["read"], history={"trades": 3})
    creds = Credentials(key["api_key"], key["api_secret"])
    other = Credentials(key["api_key"], key["api_secret"])  # equal, but another sync's object

    assert adapter.client(creds) is not adapter.client(creds)  # outside a sync: fresh each time
    with adapter.reusing(creds):
        first = adapter.client(creds)
        assert adapter.client(creds) is first
        assert adapter.client(other) is not first
        elsewhere: list[Any] = []
        thread = threading.Thread(target=lambda: elsewhere.append(adapter.client(creds)))
        thread.start()
        thread.join()
        assert elsewhere[0] is not first  # the scope is this thread's
        # A sync's pages really work through the shared client.
        assert adapter.fetch_balances(creds) == adapter.fetch_balances(creds)
        assert adapter.client(creds) is first
    assert adapter.client(creds) is not first
    assert getattr(adapter._scope, "value", None) is None  # nothing of the scope is kept


def test_scopes_nest_and_restore(registry: VenueRegistry) -> None:
    adapter: Any = registry.get("okx")
    outer, inner = Credentials("a", "b", "c"), Credentials("d", "e", "f")
    with adapter.reusing(outer):
        kept = adapter.client(outer)
        with adapter.reusing(inner):
            assert adapter.client(inner) is adapter.client(inner)
        assert adapter.client(outer) is kept
