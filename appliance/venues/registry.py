"""Which adapters exist, and building them over one shared egress layer."""

from __future__ import annotations

from appliance.errors import NotFound
from appliance.settings import Settings
from appliance.venues.base import VenueAdapter, WalletAdapter
from appliance.venues.egress import Egress


def keyed_adapter_classes() -> dict[str, type[VenueAdapter]]:
    """Venues reached with an API key: the exchanges, and Kalshi."""
    from appliance.venues.exchanges import EXCHANGE_ADAPTERS
    from appliance.venues.predictions import KEYED_PREDICTION_ADAPTERS

    return {cls.id: cls for cls in (*EXCHANGE_ADAPTERS, *KEYED_PREDICTION_ADAPTERS)}


class VenueRegistry:
    """The adapters of the enabled venues and configured chains, sharing one Egress (limiters,
    markets) per process."""

    def __init__(self, settings: Settings, egress: Egress | None = None) -> None:
        self.settings = settings
        self.egress = egress or Egress(settings)
        self._keyed: dict[str, VenueAdapter] = {}
        self._wallets: dict[str, WalletAdapter] = {}
        for venue_id, cls in keyed_adapter_classes().items():
            if settings.venue(venue_id).enabled:
                self._keyed[venue_id] = cls(self.egress)
        for wallet in self._wallet_adapters():
            self._wallets[wallet.id] = wallet

    def _wallet_adapters(self) -> list[WalletAdapter]:
        """Address-only sources: Polymarket (if enabled) and every configured chain."""
        from appliance.venues.chains import chain_adapters
        from appliance.venues.predictions import wallet_adapters

        return [*wallet_adapters(self.settings, self.egress), *chain_adapters(self.settings, self.egress)]

    def get(self, venue_id: str) -> VenueAdapter | WalletAdapter:
        adapter: VenueAdapter | WalletAdapter | None = self._keyed.get(venue_id) or self._wallets.get(venue_id)
        if adapter is None:
            raise NotFound(f"venue {venue_id!r} is not enabled on this appliance")
        return adapter

    def keyed(self) -> list[VenueAdapter]:
        return list(self._keyed.values())

    def wallets(self) -> list[WalletAdapter]:
        return list(self._wallets.values())

    def all(self) -> list[VenueAdapter | WalletAdapter]:
        return [*self._keyed.values(), *self._wallets.values()]

    def egress_hosts(self) -> list[tuple[str, str]]:
        """(venue id, host) for every host the appliance may contact: the sub-processor list."""
        rows = []
        for adapter in self.all():
            for host in self.egress.destination_hosts(adapter.id, adapter.hosts):
                rows.append((adapter.id, host))
        return rows
