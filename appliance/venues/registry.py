"""Which adapters exist, and building them over one shared egress layer."""

from __future__ import annotations

from appliance.errors import NotFound
from appliance.settings import Settings
from appliance.venues.base import VenueAdapter, WalletAdapter
from appliance.venues.egress import Egress


def keyed_adapter_classes() -> dict[str, type[VenueAdapter]]:
    """Venues reached with an API key: the exchanges, and Kalshi."""
    from appliance.venues.exchanges import EXCHANGE_ADAPTERS

    classes: dict[str, type[VenueAdapter]] = {cls.id: cls for cls in EXCHANGE_ADAPTERS}
    for cls in _prediction_keyed():
        classes[cls.id] = cls
    return classes


def _prediction_keyed() -> list[type[VenueAdapter]]:
    try:
        from appliance.venues.predictions import KEYED_PREDICTION_ADAPTERS
    except ImportError:
        return []
    return list(KEYED_PREDICTION_ADAPTERS)


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
        adapters: list[WalletAdapter] = []
        try:
            from appliance.venues.predictions import wallet_adapters as prediction_wallets
        except ImportError:
            prediction_wallets = None
        if prediction_wallets is not None:
            adapters.extend(prediction_wallets(self.settings, self.egress))
        try:
            from appliance.venues.chains import chain_adapters
        except ImportError:
            chain_adapters = None
        if chain_adapters is not None:
            adapters.extend(chain_adapters(self.settings, self.egress))
        return adapters

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
