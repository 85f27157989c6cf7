"""The names of the removable-media export format, shared by its writer and its verifier."""

from __future__ import annotations

FORMAT = "vigatra-audit-export"
FORMAT_VERSION = 1
CSV_NAME = "audit.csv"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
PUBLIC_KEY_NAME = "public_key.pem"
