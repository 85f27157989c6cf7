"""The names of the removable-media export format, shared by its writer and its verifier."""

from __future__ import annotations

import re

FORMAT = "vigatra-audit-export"
FORMAT_VERSION = 1
CSV_NAME = "audit.csv"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
PUBLIC_KEY_NAME = "public_key.pem"

# Where an export is written before it is recorded: ``.<final name>.partial-<8 hex>`` (hidden).
PARTIAL_MARK = ".partial-"
PARTIAL_NAME = re.compile(r"\.(?P<name>.+)\.partial-[0-9a-f]{8}")
# A complete export the appliance never recorded, set aside by the next export run: not in the series.
UNRECORDED_SUFFIX = ".unrecorded"
