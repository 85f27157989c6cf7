"""Transport facts from the WSGI environ: forwarded headers believed only from trusted proxies, the client
taken as the last untrusted hop, and the memo never filled by what a client sends."""

from __future__ import annotations

from typing import Any

from appliance.boundary import transport
from appliance.boundary.transport import inspect

TRUSTED = ("127.0.0.1/32", "10.0.0.0/8")


def environ(peer: str, *, proto: str = "", chain: str = "", scheme: str = "http") -> dict[str, Any]:
    env: dict[str, Any] = {"REMOTE_ADDR": peer, "wsgi.url_scheme": scheme}
    if proto:
        env["HTTP_X_FORWARDED_PROTO"] = proto
    if chain:
        env["HTTP_X_FORWARDED_FOR"] = chain
    return env


def test_forwarded_headers_from_a_trusted_proxy() -> None:
    seen = inspect(environ("127.0.0.1", proto="https", chain="203.0.113.9, 10.1.2.3"), TRUSTED)
    assert (seen.client_ip, seen.tls, seen.forwarded, seen.local) == ("203.0.113.9", True, True, False)


def test_forwarded_headers_from_anyone_else_are_ignored() -> None:
    seen = inspect(environ("192.0.2.7", proto="https", chain="203.0.113.9"), TRUSTED)
    assert (seen.client_ip, seen.tls, seen.forwarded, seen.credentials_ok) == ("192.0.2.7", False, False, False)


def test_a_direct_local_client_and_direct_tls() -> None:
    assert inspect(environ("127.0.0.1"), TRUSTED).credentials_ok
    assert inspect(environ("192.0.2.7", scheme="https"), TRUSTED).tls


def test_a_hop_that_is_no_address_is_not_trusted_nor_remembered() -> None:
    long_hop = "10.0.0.1" + "x" * 500
    before = transport._is_trusted_address.cache_info().currsize
    seen = inspect(environ("127.0.0.1", proto="https", chain=f"203.0.113.9, {long_hop}"), TRUSTED)
    assert seen.client_ip == long_hop  # the nearest untrusted hop is the client as far as we can tell
    assert transport._is_trusted_address.cache_info().currsize == before


def test_large_forwarded_headers_are_judged_but_not_memoised() -> None:
    chain = ", ".join(f"10.0.{i // 250}.{i % 250}" for i in range(100))  # our own proxies, many hops
    before = transport._judge_memo.cache_info().currsize
    seen = inspect(environ("127.0.0.1", proto="https", chain=chain), TRUSTED)
    assert seen.client_ip == "10.0.0.0" and seen.tls  # every hop trusted: the farthest one
    assert transport._judge_memo.cache_info().currsize == before
