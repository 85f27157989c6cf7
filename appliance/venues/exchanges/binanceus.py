"""Binance.US (api.binance.us): Binance's protocol, signing and error codes on another host.

Everything but the names, the guide and the permission probe is inherited from the Binance adapter.
Binance.US does not document ``/sapi/v1/account/apiRestrictions`` (VENUES.md §2). We ask it anyway; if it
answers 404 or an error while the key itself authenticates, the scope is *unknown* and the venue's
unverified policy decides (reject by default). A key that does not authenticate is still an
authentication error, and rate limits or outages are still retried, never mistaken for "unknown".
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, ClassVar

import ccxt

from appliance.errors import VenueRateLimited, VenueTransient
from appliance.venues.base import Credentials, GuideStep, Scope
from appliance.venues.exchanges.binance import BinanceAdapter
from appliance.venues.ratelimits import RateLimit

_NOT_FOUND = re.compile(r"\s404\s")  # ccxt: "<id> GET <url> 404 Not Found <body>"


class BinanceUsAdapter(BinanceAdapter):
    id = "binanceus"
    name = "Binance.US"
    ccxt_id = "binanceus"
    hosts = ("api.binance.us",)
    guide = (
        GuideStep("Log in to Binance.US and open Profile → API Management."),
        GuideStep("Create an Exchange API key (not a Custodial Solution or Credit Line key): enter a label such "
                  "as \"Compliance\", click Create and confirm with your 2FA."),
        GuideStep("Give the key read access only."),
        GuideStep("Leave every trading permission unticked (spot trading, margin, any \"Enable Trading\" box).",
                  warning=True),
        GuideStep("Leave withdrawals and transfers unticked.", warning=True),
        GuideStep("Copy the API Key and the Secret Key (the secret is shown only once) and paste them below."),
    )
    # docs.binance.us, Rate limits: 1,200 request weight a minute per IP (the weights are Binance's).
    rate_limits = (RateLimit(1200, 60, weights=((r"/api/v3/(account|myTrades|exchangeInfo)", 10),),
                             source="https://docs.binance.us/#limits"),
                   RateLimit(10, 1, path=r"/sapi/v1/capital/withdraw/history", per_account=True,
                             source="https://docs.binance.us/#get-crypto-withdrawal-history-user_data"))
    # Binance.US opened in September 2019.
    history_start: ClassVar[dt.datetime] = dt.datetime(2019, 9, 1, tzinfo=dt.UTC)

    def probe_scope(self, creds: Credentials) -> Scope:
        client = self.client(creds)
        try:
            raw = client.sapiGetAccountApiRestrictions()
        except ccxt.ExchangeNotAvailable as exc:
            if not _NOT_FOUND.search(str(exc)):
                raise self.classify(exc, creds, client) from None
            return self.unknown_scope(client, creds, "the permission endpoint answered 404")
        except ccxt.BaseError as exc:
            error = self.classify(exc, creds, client)
            if isinstance(error, (VenueRateLimited, VenueTransient)):
                raise error from None
            answer = f"code {error.venue_code}" if error.venue_code else "an error"
            return self.unknown_scope(client, creds, f"the permission endpoint answered {answer}")
        return self.call(self.scope_from_restrictions, raw, creds, creds=creds)

    def unknown_scope(self, client: Any, creds: Credentials, reason: str) -> Scope:
        """The key works (else VenueAuthError from the account call) but its permissions are unknown."""
        self.call(client.privateGetAccount, creds=creds)
        evidence = {"apiRestrictions": "unavailable", "reason": reason}
        return Scope(read=True, trade=None, transfer=None, withdraw=None, verified=False, evidence=evidence,
                     notes=(f"{self.name} did not report this key's permissions ({reason}).",))

    def regenerate_instructions(self, scope: Scope) -> str:
        granted = ", ".join(scope.granted()) or "unknown"
        return (f"This {self.name} key has {granted} permission. In {self.name}, open Profile → API Management "
                f"and delete this key, then create a new Exchange API key with read access only (trading, "
                f"withdrawals and transfers unticked), and submit the new key.")
