"""Audit exports to removable media, and their offline verification (no database, another machine).

Why a format of its own: a regulator receives a USB stick, not database access. Each export is a
directory holding the CSV (the API's columns and formula escaping), ``manifest.json`` (range, row
count, first/last event id and hash, the ``prev_hash`` the range continues from, the SHA-256 of
every file, the predecessor's manifest SHA-256), ``manifest.sig`` (raw 64-byte Ed25519 signature
over manifest.json's exact bytes — ``openssl pkeyutl -verify -rawin`` checks it too) and
``public_key.pem``. The chain inside the CSV is recomputed from the cells, so a changed byte, a
swapped manifest or a tampered database range all fail ``vigatra audit verify DIR``.

Series: an export without ``--from/--to`` is *incremental* — it continues exactly where the
previous incremental export ended (its first ``prev_hash`` is the previous export's last hash,
its manifest names the previous manifest's SHA-256), so a directory holding a series shows a
dropped, swapped or reordered export. ``--from/--to`` exports are one-off extracts outside the
series; their events are still a contiguous id range, so their chain verifies from the first
event's ``prev_hash``.

Writing is all-or-nothing, and an export is part of the series only once it is recorded: files go to
a hidden ``.partial`` directory, are fsynced, re-read and verified, the export is recorded (an
``audit.export`` event and a signed export checkpoint, in one transaction), and only then renamed into
place (termination signals wait from the commit to the rename). Any failure before the commit — disk
full, read-only medium, a chain that does not verify, a concurrent export, SIGTERM — removes what was
written and claims nothing. What a killed run leaves is tidied by the next export to the same place:
a recorded ``.partial`` is moved into place, an unrecorded one removed, and a complete export the
database never recorded (written by an older version, which renamed before recording) is renamed
``<name>.unrecorded``, which ``vigatra audit verify DIR`` reports and leaves out of the series. Export
worker processes die with the exporting process.

If events were purged before any incremental export covered them, the next incremental export
declares the hole (``purged_gap``, signed in its manifest) instead of silently breaking the series.
Likewise after a backup restore set the trail back: the next incremental export declares each restore
(``restores``: backup, restored head, replaced head, the events no longer in the trail), and the
verifier accepts the fork between it and the exports written before the restore only with that
declaration, and reports both.
The format's names, its file writes and its signature and file checks live in :mod:`.manifest` (shared
with the examination pack, :mod:`.signed`); :mod:`.writer` writes exports, :mod:`.verifier` reads them back
(with no database: on the regulator's machine).
"""

from appliance.audit.media.verifier import ExportSummary, MediaReport, verify_export, verify_media
from appliance.audit.media.writer import (
    ExportFailed,
    ExportInterrupted,
    ExportResult,
    check_destination,
    export_to_media,
    recover_destination,
)

__all__ = [
    "ExportFailed",
    "ExportInterrupted",
    "ExportResult",
    "ExportSummary",
    "MediaReport",
    "check_destination",
    "export_to_media",
    "recover_destination",
    "verify_export",
    "verify_media",
]
