"""`vigatra reports pack|verify`: the examination pack for a period, written to removable media, and its
offline check.

``verify DIR`` needs no configuration, no database and no key provider (a regulator runs it on another
machine with only the pack and, to pin the key, the appliance's public key PEM from `vigatra audit
public-key`). Exit 0 means valid/done; 1 prints one line with the reason.
"""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli.common import cli_actor, cli_state, fail, handle_errors


@click.group()
def reports() -> None:
    """Rule 204A-1 reports: the examination pack for a period, and its verification."""


@reports.command()
@click.option("--period", help="A quarter (2026Q3) or a year (2026).")
@click.option("--from", "first", help="First day of a custom period (YYYY-MM-DD), with --to.")
@click.option("--to", "last", help="Last day of a custom period (YYYY-MM-DD, inclusive).")
@click.option("--dest", required=True, type=click.Path(file_okay=False),
              help="Directory on the removable medium (must exist, outside the data dir).")
@handle_errors
def pack(period: str | None, first: str | None, last: str | None, dest: str) -> None:
    """Write the examination pack for a period (every report, the roster, the code of ethics and its
    acknowledgements, the certifications and reviews, the alerts and their resolutions) to DEST, signed."""
    import dataclasses
    import json

    from appliance.audit.checkpoints import signer_for
    from appliance.audit.media.signed import write_signed_directory
    from appliance.audit.writer import AuditRecord, append, record_failure
    from appliance.services.filings import pack as exam_pack
    from appliance.services.filings.periods import resolve

    chosen = resolve(period, first, last)  # Invalid before anything is opened or written
    state = cli_state()
    settings = state.settings()
    app = state.appliance(open_keys=False)
    actor = cli_actor()
    record = AuditRecord(action="reports.pack", actor_type="system", ip_address="local", method="CLI",
                         path="reports pack", user_agent=actor.label, resource_type="reports",
                         resource_id=chosen.label)
    try:
        with app.store.read() as session:
            files, about = exam_pack.build(session, actor, app, chosen)
        safe_id = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in settings.appliance_id) or "appliance"
        name = f"{safe_id}_examination-pack_{chosen.slug.replace('..', '_')}"
        written = write_signed_directory(dest, settings.data_dir, name, signer_for(app), exam_pack.FORMAT, about,
                                         files)
    except BaseException as exc:
        record_failure(app.store, record, action="reports.pack", detail={"dest": str(dest)}, exc=exc)
        raise
    with app.store.unit_of_work() as session:
        append(session, [dataclasses.replace(record, outcome="success", detail=json.dumps(
            {"dest": str(written.path), "manifest_sha256": written.manifest_sha256, "files": len(files),
             "period": chosen.label}, sort_keys=True))])
    click.echo(f"examination pack for {chosen.text()}: {len(files)} files in {written.path}")
    click.echo(f"manifest sha256 {written.manifest_sha256}; signed by key {written.key_id}; verified")


@reports.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, exists=True),
              help="The appliance's public key PEM: require that the pack be signed by it.")
@handle_errors
def verify(path: str, public_key: str | None) -> None:
    """Verify an examination pack offline (no --config needed): signature, every file, nothing added."""
    from appliance.audit.media.signed import verify_signed_directory
    from appliance.crypto import load_public_key
    from appliance.services.filings.pack import FORMAT

    pem = None
    if public_key is not None:
        pem = Path(public_key).read_text(encoding="ascii", errors="replace")
        try:
            load_public_key(pem)
        except ValueError as exc:
            fail(f"--public-key {public_key}: {exc}")
    found = verify_signed_directory(path, FORMAT, public_key_pem=pem)
    if pem is None:
        click.echo("note: the signing key was not pinned; pass --public-key with the appliance's key to check who "
                   "signed", err=True)
    files = found.manifest.get("files", {})
    period = found.manifest.get("period", {})
    click.echo(f"examination pack valid: {found.manifest.get('firm')}, {period.get('label')} "
               f"({period.get('from')} to {period.get('to')}), {len(files)} files, signed by key {found.key_id}")
