"""Which adapters exist, and building them over one shared egress layer."""

from __future__ import annotations

from appliance.settings import Settings
from appliance.venues.base import VenueAdapter
from appliance.venues.egress import Egress


def adapter_classes() -> dict[str, type[VenueAdapter]]:
    from appliance.venues.exchanges import EXCHANGE_ADAPTERS

    return {cls.id: cls for cls in EXCHANGE_ADAPTERS}


class VenueRegistry:
    """The adapters of the enabled venues, sharing one Egress (limiters, markets) per process."""

    def __init__(self, settings: Settings, egress: Egress | None = None) -> None:
        self.settings = settings
        self.egress = egress or Egress(settings)
        self._adapters: dict[str, VenueAdapter] = {}
        for venue_id, cls in adapter_classes().items():
            if settings.venue(venue_id).enabled:
                self._adapters[venue_id] = cls(self.egress)

    def get(self, venue_id: str) -> VenueAdapter:
        from appliance.errors import NotFound

        adapter = self._adapters.get(venue_id)
        if adapter is None:
            raise NotFound(f"venue {venue_id!r} is not enabled on this appliance")
        return adapter

    def all(self) -> list[VenueAdapter]:
        return list(self._adapters.values())

    def egress_hosts(self) -> list[tuple[str, str]]:
        """(venue id, host) for every host the appliance may contact: the sub-processor list."""
        rows = []
        for adapter in self.all():
            for host in self.egress.destination_hosts(adapter.id, adapter.hosts):
                rows.append((adapter.id, host))
        return rows
