"""What may appear in text a person typed: no NUL (PostgreSQL text cannot hold it), no other C0 control
but tab and line breaks, no DEL, no lone surrogate (it cannot be encoded). One rule for the routes'
schemas (boundary/params.py) and the services that take text from elsewhere (CSV import, the CLI)."""

from __future__ import annotations

import re

CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# The same rule as a JSON Schema (ECMA-262) pattern, for the published document. Lone surrogates cannot be
# written in a JSON document at all, so the pattern need not name them.
NO_CONTROL_PATTERN = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F]*$"
CONTROL_MESSAGE = "must not contain control characters (such as NUL)"


def has_control_characters(value: str) -> bool:
    return CONTROL_CHARACTERS.search(value) is not None
