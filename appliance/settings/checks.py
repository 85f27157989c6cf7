"""Checks across keys, run once the settings are built (a value valid alone can be wrong beside another)."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.settings.people import (
    PreclearanceSettings,
)
from appliance.settings.sections import (
    ASSET_CODE,
    EXCHANGE_IDS,
    PRICE_IMPORT_SOURCE,
    NotificationSettings,
    ValuationSettings,
    _bad,
)

if TYPE_CHECKING:  # the settings object is built by the loader, which runs these checks
    from appliance.settings.loader import Settings


def _cross_check(settings: Settings, source: str) -> None:
    _check_preclearance(settings.preclearance, source)
    _check_attestations(settings, source)
    for proxy in settings.server.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise _bad(("server", "trusted_proxies"), source,
                       f"{proxy!r} is not an IP address or network") from None
    public = settings.server.public_url
    if public and not public.startswith(("https://", "http://127.", "http://localhost")):
        raise _bad(("server", "public_url"), source, "must be an https:// URL")
    for venue_id, venue in settings.venues.items():
        if venue.base_url and not _http_url(venue.base_url):
            raise _bad(("venues", venue_id, "base_url"), source,
                       f"must be an http:// or https:// URL with a host, got {venue.base_url!r}")
    for name, chain in settings.chains.evm.items():
        if chain.enabled and not chain.rpc_url.startswith(("https://", "http://")):
            raise _bad(("chains", "evm", name, "rpc_url"), source, "an enabled chain needs an http(s):// rpc_url")
    bitcoin = settings.chains.bitcoin
    if bitcoin.enabled and not bitcoin.esplora_url.startswith(("https://", "http://")):
        raise _bad(("chains", "bitcoin", "esplora_url"), source, "enabled Bitcoin needs an http(s):// esplora_url")
    url = settings.database.url
    if url and not url.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
        raise _bad(("database", "url"), source, "must start with sqlite:/// or postgresql+psycopg://")
    if settings.auth.password_min_length < 15 and not settings.auth.mfa_required:
        raise _bad(("auth", "password_min_length"), source,
                   "must be at least 15 unless auth.mfa_required is true (NIST SP 800-63B)")
    _check_smtp(settings.notifications, source)
    backup_dest = settings.backup.dest
    if backup_dest and not Path(backup_dest).is_absolute():
        raise _bad(("backup", "dest"), source, f"must be an absolute path, got {backup_dest!r}")
    if not settings.data_dir.is_absolute():
        raise _bad(("data_dir",), source, f"must be an absolute path, got {str(settings.data_dir)!r}")
    _check_valuation(settings.valuation, source)
    _check_time_zone(settings.display.time_zone, source)
    _check_large_trade_value(settings.display.large_trade_value, source)
    _check_directory(settings, source)
    _check_roster(settings, source)


SECRET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ROLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{1,63}$")


def _check_directory(settings: Settings, source: str) -> None:
    ldap, oidc = settings.directory.ldap, settings.directory.oidc
    if ldap.enabled:
        url = ldap.url.strip().lower()
        if url.startswith("ldap://"):
            if not ldap.starttls:
                raise _bad(("directory", "ldap", "starttls"), source,
                           "an ldap:// url needs starttls: true (passwords never cross the network in clear); "
                           "or use ldaps://")
        elif not url.startswith("ldaps://"):
            raise _bad(("directory", "ldap", "url"), source, "must be an ldaps:// or ldap:// (with starttls) URL")
        for key in ("bind_dn", "user_base"):
            if not getattr(ldap, key).strip():
                raise _bad(("directory", "ldap", key), source, "is required when directory.ldap.enabled is true")
        if not SECRET_NAME.match(ldap.bind_password_secret):
            raise _bad(("directory", "ldap", "bind_password_secret"), source,
                       "a name of letters, digits, '.', '_' and '-' (up to 64)")
    if oidc.enabled:
        issuer = oidc.issuer.strip()
        loopback = issuer.startswith(("http://127.", "http://localhost:", "http://[::1]"))
        if not (issuer.startswith("https://") or loopback):
            raise _bad(("directory", "oidc", "issuer"), source, "must be an https:// URL")
        if not oidc.client_id.strip():
            raise _bad(("directory", "oidc", "client_id"), source, "is required when directory.oidc.enabled is true")
        if oidc.client_auth != "none" and not SECRET_NAME.match(oidc.client_secret_name):
            raise _bad(("directory", "oidc", "client_secret_name"), source,
                       "a name of letters, digits, '.', '_' and '-' (up to 64)")
        if not settings.server.public_url:
            raise _bad(("directory", "oidc", "enabled"), source,
                       "OpenID Connect needs server.public_url (the provider sends users back to "
                       "<public_url>/login/oidc/callback)")
    for group, roles in settings.directory.role_map.items():
        if not roles:
            raise _bad(("directory", "role_map", group), source, "lists no role")
        for role in roles:
            if not ROLE_NAME.match(role):
                raise _bad(("directory", "role_map", group), source, f"{role!r} is not a role name")


def _check_roster(settings: Settings, source: str) -> None:
    roster = settings.roster
    if roster.ldap.enabled and not settings.directory.ldap.url:
        raise _bad(("roster", "ldap", "enabled"), source,
                   "the roster is read through directory.ldap: configure its url, bind_dn and user_base")
    if roster.files.directory and not Path(roster.files.directory).is_absolute():
        raise _bad(("roster", "files", "directory"), source,
                   f"must be an absolute path, got {roster.files.directory!r}")


def _check_preclearance(pc: PreclearanceSettings, source: str) -> None:
    import datetime as dt
    import zoneinfo
    from decimal import Decimal, InvalidOperation

    try:
        zoneinfo.ZoneInfo(pc.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _bad(("preclearance", "time_zone"), source,
                   f"{pc.time_zone!r} is not a time zone name (e.g. Europe/London, America/New_York)") from None
    for day in pc.holidays:
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            raise _bad(("preclearance", "holidays"), source, f"{day!r} is not a date (YYYY-MM-DD)") from None
    if pc.auto_approve_below:
        try:
            value = Decimal(pc.auto_approve_below)
        except InvalidOperation:
            value = Decimal(-1)
        if not value.is_finite() or value <= 0:
            raise _bad(("preclearance", "auto_approve_below"), source,
                       f"must be a positive amount, got {pc.auto_approve_below!r}")


def _check_attestations(settings: Settings, source: str) -> None:
    import datetime as dt

    text = settings.attestations.annual_due
    try:
        if len(text) != 5 or text[2] != "-":
            raise ValueError(text)
        dt.date(2024, int(text[:2]), int(text[3:]))  # a leap year: 02-29 is a valid month-day
    except ValueError:
        raise _bad(("attestations", "annual_due"), source,
                   f"must be a month-day MM-DD (e.g. 02-14), got {text!r}") from None


def _check_time_zone(name: str, source: str) -> None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _bad(("display", "time_zone"), source,
                   f"{name!r} is not a time zone this machine knows (an IANA name such as Europe/London; the "
                   "tzdata package provides them)") from None


def _check_large_trade_value(text: str, source: str) -> None:
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0:
        raise _bad(("display", "large_trade_value"), source,
                   f"must be an amount of 0 or more in valuation.currency, such as 10000, got {text!r}")


def _check_valuation(valuation: ValuationSettings, source: str) -> None:
    if not ASSET_CODE.match(valuation.currency) or len(valuation.currency) > 16:
        raise _bad(("valuation", "currency"), source,
                   f"must be a currency code such as USD, EUR or GBP, got {valuation.currency!r}")
    sources = (*EXCHANGE_IDS, PRICE_IMPORT_SOURCE)
    orders: list[tuple[tuple[str, ...], tuple[str, ...]]] = [(("valuation", "venues"), valuation.venues)]
    orders += [(("valuation", "assets", asset, "venues"), item.venues) for asset, item in valuation.assets.items()]
    for path, order in orders:
        for venue in order:
            if venue not in sources:
                raise _bad(path, source, f"{venue!r} is not a price source (known: {', '.join(sources)})")
        if len(set(order)) != len(order):
            raise _bad(path, source, "lists a source twice")
    for asset in valuation.cross_via:
        if not ASSET_CODE.match(asset):
            raise _bad(("valuation", "cross_via"), source, f"{asset!r} is not an asset code (upper case, e.g. USDT)")


ADDRESS = re.compile(r"^[^@\s<>,;\"]{1,64}@[^@\s<>,;\"]{1,190}\.[^@\s<>,;\"]{2,63}$")


def _check_smtp(notifications: NotificationSettings, source: str) -> None:
    smtp = notifications.smtp
    for address in notifications.compliance_mailbox:
        if not ADDRESS.match(address):
            raise _bad(("notifications", "compliance_mailbox"), source, f"{address!r} is not an e-mail address")
    if not smtp.host:
        return
    if not ADDRESS.match(smtp.sender):
        raise _bad(("notifications", "smtp", "sender"), source,
                   "an e-mail address is required when notifications.smtp.host is set")
    loopback = smtp.host == "localhost" or _is_loopback_host(smtp.host)
    if smtp.username and not smtp.starttls and not loopback:
        raise _bad(("notifications", "smtp", "username"), source,
                   "SMTP authentication needs starttls: true (the password would cross the network in clear)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", smtp.password_secret):
        raise _bad(("notifications", "smtp", "password_secret"), source,
                   "a name of letters, digits, '.', '_' and '-' (up to 64)")


def _is_loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_url(value: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. a malformed IPv6 literal or port
        return False


# ---------------------------------------------------------------------------------------------
# Documentation: config/vigatra.example.yaml is generated from the schema and checked by a test.


