"""Helpers the venue tests share: simulator keys as credentials, and walking a stream to its end."""

from __future__ import annotations

from typing import Any

from appliance.venues.base import Credentials, Page, TxRecord


def creds_of(key: dict[str, Any]) -> Credentials:
    return Credentials(key["api_key"], key["api_secret"], key.get("passphrase") or "")


def pages(adapter: Any, creds: Any, stream: str, cursor: dict[str, Any] | None = None, limit: int = 300
          ) -> list[Page]:
    """Every page of ``stream`` from ``cursor`` until the adapter says done."""
    out = [adapter.fetch_transactions(creds, stream, dict(cursor or {}))]
    while not out[-1].done:
        if len(out) >= limit:
            raise AssertionError(f"{adapter.id}/{stream}: more than {limit} pages")
        out.append(adapter.fetch_transactions(creds, stream, out[-1].cursor))
    return out


def drain(adapter: Any, creds: Any, stream: str, cursor: dict[str, Any] | None = None, limit: int = 300
          ) -> tuple[list[TxRecord], Page]:
    """All records of ``stream`` from ``cursor``, and the last page (whose cursor resumes)."""
    walked = pages(adapter, creds, stream, cursor, limit)
    return [r for page in walked for r in page.records], walked[-1]
