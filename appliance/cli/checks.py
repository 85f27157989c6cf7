"""Checks of `vigatra doctor` about how the appliance is reached: each takes the settings and returns
findings as ``(check, ok, detail)``; doctor reports a failed one as a warning (the appliance still
runs, but someone should look).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from appliance.settings import Settings

Finding = tuple[str, bool, str]


def _loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything, so assume the network reaches it


def public_url_findings(settings: Settings) -> list[Finding]:
    """Onboarding links are built from server.public_url, never from a request's Host header; without it
    they name this machine's own name, which employees may not reach."""
    from appliance.services.onboarding import public_base

    configured = settings.server.public_url
    if not configured:
        return [("public url", False, f"server.public_url is not set: onboarding links name {public_base(settings)}; "
                                      "set it to the https:// address employees reach (vigatra init --public-url "
                                      "does for new installs)")]
    host = urlsplit(configured).hostname or ""
    if _loopback(host) and not settings.server.dev_allow_insecure_onboarding:
        return [("public url", False, f"server.public_url {configured} names this machine only: employees cannot "
                                      "open onboarding links from their own devices")]
    return [("public url", True, configured)]


def exposure_findings(settings: Settings) -> list[Finding]:
    """waitress speaks plain HTTP. Bound to loopback, only the local TLS front (nginx/Caddy) reaches it;
    bound to anything else, the network reaches it without TLS, passwords and keys included."""
    server = settings.server
    host = server.host
    if not _loopback(host):
        return [("exposure", False, f"waitress listens on {host}:{server.port} over plain HTTP: anyone who can reach "
                                    "that address talks to the appliance without TLS. Bind server.host to 127.0.0.1 "
                                    "behind the bundled TLS front (docs/SECURITY.md, 'Loopback and TLS')")]
    proxies = ", ".join(server.trusted_proxies) or "none"
    outside = [p for p in server.trusted_proxies if not ipaddress.ip_network(p, strict=False).is_loopback]
    if outside:
        return [("exposure", False, f"X-Forwarded-Proto is believed from {', '.join(outside)}: every host there can "
                                    "make a plain-HTTP request count as TLS")]
    return [("exposure", True, f"waitress on {host}:{server.port} (loopback); TLS proxies trusted: {proxies}")]


__all__ = ["Finding", "exposure_findings", "public_url_findings"]
