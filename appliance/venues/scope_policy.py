"""Deciding whether a probed key may be stored.

A key is accepted only when the venue confirmed it is read-only. A key with trade, transfer or
withdraw permission is rejected with the venue's own regenerate instructions. A venue that cannot
be probed (or a probe that left a permission unknown) falls to the configured policy:
``reject`` (default) or ``accept_unverified`` (stored, marked unverified, shown as such).
An accepted key's limitations (what it will not let us read: a permission it lacks, a sub-account's
missing records) are told in the same message, so the employee can fix them or knows they are gaps.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.venues.base import Scope, VenueAdapter


@dataclass(frozen=True)
class ScopeDecision:
    accepted: bool
    verified: bool
    message: str


def decide(adapter: VenueAdapter, scope: Scope, policy: str) -> ScopeDecision:
    if scope.escalated:
        return ScopeDecision(False, scope.verified, adapter.regenerate_instructions(scope))
    if scope.read is False:
        return ScopeDecision(False, scope.verified, adapter.cannot_read(scope))
    caveats = "".join(f" {text}" for text in scope.limitations)
    if scope.read_only:
        return ScopeDecision(True, True, f"{adapter.name} key accepted: read-only access confirmed.{caveats}")
    unknown = [name for name in ("read", "trade", "transfer", "withdraw") if getattr(scope, name) is None]
    if policy == "accept_unverified":
        return ScopeDecision(True, False,
                             f"{adapter.name} key accepted but marked unverified: {adapter.name} does not let us "
                             f"confirm these permissions are off: {', '.join(unknown)}.{caveats}")
    return ScopeDecision(False, False,
                         f"{adapter.name} does not let us confirm that this key cannot "
                         f"{' or '.join(n for n in unknown if n != 'read') or 'trade or withdraw'}, so this "
                         "appliance does not accept it. Ask your compliance team.")
