"""Rule 204A-1 reports (SEC Rule 204A-1, 17j-1; COMPLIANCE.md): holdings as of a chosen date reconstructed
from balance observations and transactions, transactions of a period in the rule's fields, the access-person
roster, coverage gaps stated on every report, and the firm's examination pack (a signed directory verified
offline like the audit export).

- :mod:`.periods`: quarters, years and custom date ranges (``2026Q3``, ``2026``, from/to days).
- :mod:`.holdings`: holdings as of the end of a day.
- :mod:`.rows`: the rule's transaction rows, the roster, coverage gaps.
- :mod:`.csvout`: CSV with numbers as numbers, ISO dates and formula cells neutralised.
- :mod:`.pack`: the examination pack.
"""
