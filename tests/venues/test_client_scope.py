"""One authenticated ccxt client per sync, never more widely: inside ``reusing(creds)`` the pages of a
sync share the client built for those credentials; other credentials, other threads and anything
outside the scope get fresh ones, and the client (holding the secret) is dropped when the scope ends."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from appliance.venues.base import Credentials
from appliance.venues.registry import VenueRegistry
from tests.support.sim import RunningSim


def test_a_client_is_reused_only_inside_its_scope(registry: VenueRegistry, sim: RunningSim,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    adapter: Any = registry.get("kraken")
    key = sim.create_key("kraken", ["read"], history={"trades": 3})
    creds = Credentials(key["api_key"], key["api_secret"])
    other = Credentials(key["api_key"], key["api_secret"])  # equal, but another sync's object

    # Count the clients built for ``creds`` (by identity: ``other`` is equal, and markets() builds
    # credential-less ones).
    built: list[Credentials | None] = []
    real_new_client = adapter.new_client

    def counting_new_client(for_creds: Credentials | None = None) -> Any:
        built.append(for_creds)
        return real_new_client(for_creds)

    monkeypatch.setattr(adapter, "new_client", counting_new_client)

    def built_for_creds() -> int:
        return sum(1 for c in built if c is creds)

    assert adapter.client(creds) is not adapter.client(creds)  # outside a sync: fresh each time
    assert built_for_creds() == 2
    with adapter.reusing(creds):
        first = adapter.client(creds)
        assert built_for_creds() == 3
        assert adapter.client(creds) is first
        assert adapter.client(other) is not first
        elsewhere: list[Any] = []
        thread = threading.Thread(target=lambda: elsewhere.append(adapter.client(creds)))
        thread.start()
        thread.join()
        assert elsewhere[0] is not first  # the scope is this thread's
        # A sync's pages really work through the shared client: the first adapter.client(creds) call
        # above built it, so two fetches build no further client for creds.
        inside = built_for_creds()
        assert inside == 4  # the other thread's client was built for creds too
        assert adapter.fetch_balances(creds) == adapter.fetch_balances(creds)
        assert built_for_creds() == inside
        assert adapter.client(creds) is first
    assert adapter.client(creds) is not first
    # Outside the scope every call builds its own client again.
    outside = built_for_creds()
    adapter.fetch_balances(creds)
    adapter.fetch_balances(creds)
    assert built_for_creds() == outside + 2
    assert getattr(adapter._scope, "value", None) is None  # nothing of the scope is kept


def test_scopes_nest_and_restore(registry: VenueRegistry) -> None:
    adapter: Any = registry.get("okx")
    outer, inner = Credentials("a", "b", "c"), Credentials("d", "e", "f")
    with adapter.reusing(outer):
        kept = adapter.client(outer)
        with adapter.reusing(inner):
            assert adapter.client(inner) is adapter.client(inner)
        assert adapter.client(outer) is kept
