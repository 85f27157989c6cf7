"""Facts about how a request reached us: client IP, TLS, whether it stayed on this host.

Forwarded headers (X-Forwarded-For, X-Forwarded-Proto) are believed only when the TCP peer is one
of ``server.trusted_proxies``; from anyone else they are ignored.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

# Forwarded headers longer than this are judged afresh each time rather than memoised (a client
# must not be able to fill the memo with large values).
_MEMO_MAX_HEADER = 256


@cache
def _networks(trusted: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


# The longest textual IP address (an IPv6 address with a zone or an embedded IPv4 tail) is well under this.
_MAX_ADDRESS = 64


def _is_trusted(peer: str, trusted: tuple[str, ...]) -> bool:
    # Hops come from X-Forwarded-For: anything longer than an address is no address, and is not memoised.
    return len(peer) <= _MAX_ADDRESS and _is_trusted_address(peer, trusted)


@lru_cache(maxsize=4096)
def _is_trusted_address(peer: str, trusted: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in net for net in _networks(trusted))


@lru_cache(maxsize=4096)
def _is_loopback(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Transport:
    peer: str  # the TCP peer
    client_ip: str  # the real client (peer, or X-Forwarded-For's last untrusted hop)
    tls: bool  # TLS end to end as far as we can tell (direct TLS, or a trusted proxy saying https)
    forwarded: bool  # came through a trusted proxy
    local: bool  # a direct connection from this host with no proxy in between

    @property
    def credentials_ok(self) -> bool:
        """Passwords and tokens may travel here: over TLS, or without leaving this host."""
        return self.tls or self.local


def inspect(environ: dict[str, Any], trusted: tuple[str, ...]) -> Transport:
    """The transport facts of a request, from its WSGI environ (memoised: a server sees few distinct
    combinations of peer, scheme and forwarded headers, and this runs on every request)."""
    proto, chain = environ.get("HTTP_X_FORWARDED_PROTO", ""), environ.get("HTTP_X_FORWARDED_FOR", "")
    judge = _judge_memo if len(proto) + len(chain) <= _MEMO_MAX_HEADER else _judge
    return judge(environ.get("REMOTE_ADDR") or "", environ.get("wsgi.url_scheme") == "https", proto, chain, trusted)


def _judge(peer: str, direct_tls: bool, forwarded_proto: str, forwarded_for: str, trusted: tuple[str, ...]
           ) -> Transport:
    if peer and _is_trusted(peer, trusted):
        proto = forwarded_proto.split(",", maxsplit=1)[0].strip().lower()
        chain = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        client = peer
        # Walk from the nearest hop back while hops are our own proxies.
        for hop in reversed(chain):
            client = hop
            if not _is_trusted(hop, trusted):
                break
        if proto or chain:
            return Transport(peer, client, direct_tls or proto == "https", True, False)
    return Transport(peer, peer, direct_tls, False, _is_loopback(peer))


_judge_memo = lru_cache(maxsize=1024)(_judge)
