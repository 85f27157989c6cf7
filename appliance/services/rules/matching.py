"""Matching records against list entries: pure functions, no database.

Entry kinds and how they match:
- ``asset``: a symbol (``ACME``; the traded asset or the quote asset of a trade, a held asset) or a
  contract on a chain (``ethereum:0xAbC...``: token transfers and balances of that contract on that chain);
- ``venue``: the venue id of the connection (``kraken``, ``polymarket``, an EVM chain name);
- ``market_text``: a keyword or phrase found in a prediction market's title or question,
  case-insensitively and as whole words ("Acme" matches "Acme Corp Q4 earnings beat?", not "Acmes");
  the words of a phrase may be separated by any whitespace;
- ``market_category``: a prediction market's category (case-insensitive, exact);
- ``market_id``: a prediction market's id (Polymarket condition id, Kalshi ticker; case-insensitive).
Each entry matches only records whose time falls within its effective dates.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from appliance.errors import Invalid

ENTRY_TYPES = ("asset", "venue", "market_text", "market_category", "market_id")
SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
CHAIN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
EVM_CONTRACT = re.compile(r"^0x[0-9a-fA-F]{40}$")


def normalise(entry_type: str, value: str, venues: frozenset[str] | None = None) -> tuple[str, str]:
    """(value as shown, match key); raises Invalid saying what is wrong with the value."""
    field_name = "value"
    text = " ".join(value.split()) if isinstance(value, str) else ""
    if not text:
        raise Invalid(f"a {entry_type} entry needs a value", field=field_name)
    if entry_type == "asset":
        if ":" in text:
            chain, _, contract = text.partition(":")
            chain = chain.strip().lower()
            contract = contract.strip()
            if not CHAIN.match(chain):
                raise Invalid(f"{text!r}: the chain before ':' must be a chain name like ethereum", field=field_name)
            if chain != "bitcoin" and not EVM_CONTRACT.match(contract):
                raise Invalid(f"{text!r}: the contract after '{chain}:' must be an 0x address of 40 hex digits",
                              field=field_name)
            return f"{chain}:{contract}", f"{chain}:{contract.lower()}"
        if not SYMBOL.match(text):
            raise Invalid(f"{text!r} is not an asset symbol (letters and digits, e.g. BTC) or chain:contract",
                          field=field_name)
        return text.upper(), text.upper()
    if entry_type == "venue":
        key = text.lower()
        if venues is not None and key not in venues:
            raise Invalid(f"unknown venue {text!r} (known: {', '.join(sorted(venues))})", field=field_name)
        return key, key
    if entry_type == "market_text":
        if len(text) > 200:
            raise Invalid("a keyword or phrase is at most 200 characters", field=field_name)
        if not re.search(r"\w", text):
            raise Invalid(f"{text!r} has no word to look for", field=field_name)
        return text, text.casefold()
    if entry_type == "market_category":
        if len(text) > 100:
            raise Invalid("a category is at most 100 characters", field=field_name)
        return text, text.casefold()
    if entry_type == "market_id":
        if len(text) > 200:
            raise Invalid("a market id is at most 200 characters", field=field_name)
        return text, text.lower()
    raise Invalid(f"unknown entry type {entry_type!r} (one of {', '.join(ENTRY_TYPES)})", field="type")


def phrase_pattern(phrase: str) -> str:
    """A whole-word, whitespace-tolerant pattern for one phrase: word boundaries are judged on the
    phrase's own ends, so "Q4." or "S&P 500" work as well as plain words."""
    words = [re.escape(w) for w in phrase.split()]
    body = r"\s+".join(words)
    return rf"(?<!\w){body}(?!\w)"


@dataclass(frozen=True)
class Entry:
    id: int
    list_id: int
    type: str
    key: str
    value: str
    effective_from: dt.datetime | None
    effective_to: dt.datetime | None

    def effective(self, at: dt.datetime) -> bool:
        return ((self.effective_from is None or self.effective_from <= at)
                and (self.effective_to is None or at < self.effective_to))


@dataclass
class ListMatcher:
    """The live entries of one list, indexed for matching."""

    list_id: int
    assets: dict[str, list[Entry]] = field(default_factory=dict)
    contracts: dict[str, list[Entry]] = field(default_factory=dict)
    venues: dict[str, list[Entry]] = field(default_factory=dict)
    categories: dict[str, list[Entry]] = field(default_factory=dict)
    market_ids: dict[str, list[Entry]] = field(default_factory=dict)
    phrases: dict[str, list[Entry]] = field(default_factory=dict)
    _any_phrase: re.Pattern[str] | None = None
    _phrase_patterns: list[tuple[re.Pattern[str], list[Entry]]] = field(default_factory=list)

    @classmethod
    def build(cls, list_id: int, entries: Iterable[Entry]) -> ListMatcher:
        matcher = cls(list_id)
        for entry in entries:
            if entry.type == "asset":
                target = matcher.contracts if ":" in entry.key else matcher.assets
            else:
                target = {"venue": matcher.venues, "market_category": matcher.categories,
                          "market_id": matcher.market_ids, "market_text": matcher.phrases}[entry.type]
            target.setdefault(entry.key, []).append(entry)
        if matcher.phrases:
            # One combined pattern finds out cheaply whether any phrase occurs; only then is each tried.
            ordered = sorted(matcher.phrases, key=len, reverse=True)
            matcher._any_phrase = re.compile("|".join(phrase_pattern(p) for p in ordered), re.IGNORECASE)
            matcher._phrase_patterns = [(re.compile(phrase_pattern(p), re.IGNORECASE), matcher.phrases[p])
                                        for p in ordered]
        return matcher

    @property
    def empty(self) -> bool:
        return not (self.assets or self.contracts or self.venues or self.categories or self.market_ids
                    or self.phrases)

    @property
    def has_market_entries(self) -> bool:
        return bool(self.categories or self.market_ids or self.phrases)

    def symbols(self) -> set[str]:
        return set(self.assets)

    # -- what one record touches ------------------------------------------------------------------
    def could_touch(self, asset: str, quote: str, venue: str, market: str) -> bool:
        """A quick test for records outside prediction markets (upper-case symbols): False means no
        entry can match, whatever the dates; True means ``match`` must decide."""
        assets = self.assets
        return bool(asset in assets or (quote and quote in assets) or venue in self.venues
                    or (self.contracts and market.startswith("0x")))

    def match(self, at: dt.datetime, *, symbols: Sequence[str | None] = (), contract: str | None = None,
              venue: str | None = None, market_id: str | None = None, title: str | None = None,
              category: str | None = None) -> list[Entry]:
        """The entries effective at ``at`` that the record touches (each once, in entry id order)."""
        found: dict[int, Entry] = {}

        def take(entries: list[Entry] | None) -> None:
            for entry in entries or ():
                if entry.effective(at):
                    found[entry.id] = entry

        for symbol in symbols:
            if symbol:
                take(self.assets.get(symbol.upper()))
        if contract:
            take(self.contracts.get(contract.lower()))
        if venue:
            take(self.venues.get(venue.lower()))
        if market_id:
            take(self.market_ids.get(market_id.lower()))
        if category:
            take(self.categories.get(" ".join(category.split()).casefold()))
        if title and self._any_phrase is not None and self._any_phrase.search(title):
            for pattern, entries in self._phrase_patterns:
                if pattern.search(title):
                    take(entries)
        return [found[k] for k in sorted(found)]


def text_matches(phrase: str, text: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words, ignoring case (the rule the lists use)."""
    return re.search(phrase_pattern(" ".join(phrase.split())), text, re.IGNORECASE) is not None
