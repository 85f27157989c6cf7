"""HTTP concerns shared by the chain clients: the request budget and classifying failures.

The request budget of each chain endpoint is read by the egress layer from ``chains.*``.
Messages never include the endpoint URL: a provider URL often carries the customer's API key in its
path (``https://mainnet.infura.io/v3/<key>``).
"""

from __future__ import annotations

from typing import Any

import requests

from appliance.errors import (
    VenueAuthError,
    VenueBadData,
    VenuePermissionError,
    VenueRateLimited,
    VenueTransient,
)
from appliance.venues.egress import retry_after_seconds


def send(session: requests.Session, venue: str, method: str, url: str, **kwargs: Any) -> requests.Response:
    """One request; network failures become VenueTransient without echoing the URL."""
    try:
        return session.request(method, url, **kwargs)
    except requests.Timeout:
        raise VenueTransient(venue, "the endpoint did not answer in time") from None
    except requests.ConnectionError:
        raise VenueTransient(venue, "the endpoint could not be reached") from None
    except requests.RequestException as exc:
        raise VenueTransient(venue, f"request failed ({type(exc).__name__})") from None


def raise_for_http(venue: str, response: requests.Response) -> None:
    """Classify a non-2xx answer (the body is quoted briefly: it is the provider's own words)."""
    status = response.status_code
    if status < 400:
        return
    text = " ".join(response.text.split())[:160]
    if status == 429:
        raise VenueRateLimited(venue, f"HTTP 429 {text}".strip(), retry_after=retry_after_seconds(response.headers))
    if status == 401:
        raise VenueAuthError(venue, f"HTTP 401: the endpoint refused our credentials {text}".strip())
    if status == 403:
        raise VenuePermissionError(venue, f"HTTP 403 {text}".strip())
    if status >= 500 or status == 408:
        raise VenueTransient(venue, f"HTTP {status} {text}".strip())
    raise VenueBadData(venue, f"HTTP {status} {text}".strip(), venue_code=str(status))

