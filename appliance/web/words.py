"""Plain words for the states and errors the pages show (the raw venue text stays behind a "details" disclosure)."""

from __future__ import annotations

STATUS_WORDS = {
    "pending": "Waiting for its first poll.",
    "active": "Working: polled on schedule.",
    "degraded": "Working, but recent polls had errors; it is retried automatically.",
    "rejected": "Refused when added: the key could do more than read (trade or withdraw). Ask for a read-only key.",
    "broken": "Not working: the venue refuses the key. The employee must fix or replace it.",
    "reonboarding_required": "Waiting for the employee to re-onboard with a new key (send them a re-onboarding link).",
    "offboarded": "Stopped: the employee was offboarded. Records are kept.",
}

ERROR_WORDS = {
    "authentication": "The venue no longer accepts the key (revoked, expired or mistyped).",
    "permission": "The key lacks a read permission the appliance needs.",
    "rate_limit": "The venue asked the appliance to slow down; the next poll waits longer.",
    "transient": "The venue did not answer properly (timeout or server error); the next poll retries.",
    "bad_data": "The venue sent something the appliance could not read; nothing was recorded from it.",
    "refused": "The appliance's egress rules refused the venue's address.",
    "scope_escalation": "The key gained a trade or withdraw permission: polling stopped until it is read-only again.",
    "integrity": "A sealed secret failed its integrity check; an administrator must look at the keys.",
    "keys": "The encryption keys were not available to open the venue secret.",
    "database": "The appliance's database refused a write; the poll is retried.",
    "lease_lost": "Another node took over this connection mid-poll; it carries on there.",
    "internal": "An internal error stopped the poll; see the appliance log.",
}
