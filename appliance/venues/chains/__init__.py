"""Self-custody wallets read by public address: EVM chains over JSON-RPC, Bitcoin over Esplora.

``chain_adapters(settings, egress)`` builds one adapter per enabled, configured chain (an EVM
adapter's id is the chain's config name, Bitcoin's is ``bitcoin``). Address validation for onboarding
lives in :mod:`appliance.venues.chains.addresses` and needs no network.
"""

from __future__ import annotations

from appliance.settings import Settings
from appliance.venues.base import WalletAdapter
from appliance.venues.chains.bitcoin import BitcoinAdapter
from appliance.venues.chains.evm import EvmAdapter
from appliance.venues.egress import Egress

__all__ = ["BitcoinAdapter", "EvmAdapter", "chain_adapters"]


def chain_adapters(settings: Settings, egress: Egress) -> list[WalletAdapter]:
    adapters: list[WalletAdapter] = [
        EvmAdapter(egress, name, chain) for name, chain in settings.chains.evm.items()
        if chain.enabled and chain.rpc_url]
    bitcoin = settings.chains.bitcoin
    if bitcoin.enabled and bitcoin.esplora_url:
        adapters.append(BitcoinAdapter(egress, bitcoin))
    return adapters
