"""`vigatra keys init|status|rotate|rewrap|verify`: the operator's handle on the envelope keys.

A thin shell over :mod:`appliance.services.keys` (STYLE.md habit 11). Why each command is shaped
the way it is:

- ``init`` is idempotent because install.sh runs it: once data keys exist it only checks that the
  configured KEK opens them and never creates a new KEK next to them (that would strand them).
- ``rotate`` commits per batch and is resumable: killing it at any instant leaves every secret
  openable, and running it again finishes the job. The new version and the retirement are audited
  in the transactions that make them.
- ``rewrap`` changes only the wrapping of the DEKs, in one transaction, then tells the operator
  (or rewrites, with ``--update-config``) the configuration that points at the new KEK.
- ``verify`` opens every sealed value; a failure is tampering, so it gets the same tamper response
  as a failure met while serving (connection broken, alert, audit) and a non-zero exit.

Nothing here prints a key byte or a secret: only versions, KEK ids, counts and table/column/row.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import yaml

from appliance.cli.common import audited, cli_state, echo_table, fail, handle_errors
from appliance.cli.setup import PROVIDERS, key_options, keys_section

# keys.* settings that say where the KEK is; `rewrap --update-config` replaces exactly these.
PROVIDER_KEYS = ("provider", "file_path", "env_var", "systemd_credential", "keyring_service", "pkcs11_module",
                 "pkcs11_token_label", "pkcs11_key_label", "pkcs11_pin_file")
CREATABLE = ("file", "keyring", "pkcs11")


@click.group()
def keys() -> None:
    """Envelope keys: the KEK in its provider, the data keys (DEKs) in the database."""


def _unwrap_check(app: Any, session: Any) -> str:
    """Load the DEKs with the configured provider (one clear line if it cannot) and return its KEK id."""
    app.keys.provider.check()
    app.keys.load(session)
    return str(app.keys.provider.kek_id())


# -- init ------------------------------------------------------------------------------------------


@keys.command("init")
@handle_errors
def keys_init() -> None:
    """Create the KEK (file, keyring, pkcs11) and the first data key; a second run changes nothing."""
    from sqlalchemy import select

    from appliance.errors import KeyProviderError
    from appliance.store.models import KeyVersion

    app = cli_state().appliance(open_keys=False)
    provider = app.keys.provider
    click.echo(f"provider: {provider.describe()}")
    with app.store.read() as session:
        existing = session.execute(select(KeyVersion.version, KeyVersion.status)
                                   .order_by(KeyVersion.version)).all()
        if existing:
            # Never create a KEK next to existing data keys: they would be unreadable under it.
            kek_id = _unwrap_check(app, session)
            live = ", ".join(f"v{v} {s}" for v, s in existing if s != "retired")
            click.echo(f"KEK {kek_id} exists and opens the data keys ({live}); nothing was changed")
            return
    created = ""
    try:
        provider.check()
    except KeyProviderError as missing:
        if provider.name not in CREATABLE:
            # env and systemd: the operator provides the key; create() says how.
            try:
                provider.create()
            except KeyProviderError as how:
                fail(f"{missing.message}\n{how.message}")
            raise
        try:
            created = provider.create()
        except KeyProviderError as exc:
            # It exists but is unusable (mode, owner, content): the check's message says why.
            fail(missing.message if "already exists" in exc.message else exc.message)
        provider.check()
    kek_id = provider.kek_id()
    if created:
        click.echo(created)
    with audited("keys.init", resource_type="key_versions", detail={
            "provider": provider.name, "kek_id": kek_id, "kek_created": bool(created)}) as (session, info):
        version = app.keys.create_first(session)
        info["resource_id"] = version
    click.echo(f"created data key version {version} (active), wrapped under KEK {kek_id}")


# -- status ----------------------------------------------------------------------------------------


@keys.command("status")
@handle_errors
def keys_status() -> None:
    """Provider, KEK id, every data key version with its status and how many secrets it seals."""
    from appliance.errors import IntegrityFailure, KeyProviderError
    from appliance.services.keys import wrap_context
    from appliance.store.models import KeyVersion

    app = cli_state().appliance(open_keys=False)
    provider = app.keys.provider
    click.echo(f"provider: {provider.describe()}")
    problem = ""
    try:
        provider.check()
        click.echo(f"KEK id:   {provider.kek_id()}")
    except KeyProviderError as exc:
        problem = exc.message
        click.echo(f"KEK id:   unavailable ({exc.message})")
    with app.store.read() as session:
        counts = app.keys.sealed_counts(session)
        rows = []
        for version in app.keys.status(session):
            opens = "-"
            if version.status != "retired" and not problem:
                row = session.get(KeyVersion, version.version)
                assert row is not None  # listed by status() in this very transaction
                try:
                    provider.unwrap(row.wrapped_key, context=wrap_context(version.version))
                    opens = "yes"
                except (KeyProviderError, IntegrityFailure) as exc:
                    opens = "NO"
                    problem = problem or exc.message
            rows.append([version.version, version.status, version.kek_id, version.created_at, opens, version.secrets])
    if rows:
        echo_table(rows, ["version", "status", "wrapped under", "created", "opens", "secrets"])
    else:
        click.echo("no data keys: run `vigatra keys init`")
    if counts.get(None):
        click.echo(f"unreadable sealed values (not a sealed blob): {counts[None]}; run `vigatra keys verify`")
    if any(r[1] == "retiring" for r in rows):
        click.echo("a rotation is in progress or was interrupted: run `vigatra keys rotate` to finish it")
    if problem:
        fail(problem)


# -- rotate ----------------------------------------------------------------------------------------


class _Progress:
    """At most one progress line a second (a rotation over 100k rows would otherwise print thousands)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= 1.0 or done >= self.total:
            self.last = now
            click.echo(f"re-sealed {done}/{self.total}")


@keys.command("rotate")
@click.option("--batch-size", type=click.IntRange(1, 100000), help="Values re-sealed per transaction "
              "(default: keys.rotation_batch_size).")
@handle_errors
def keys_rotate(batch_size: int | None) -> None:
    """New data key; re-seal every secret in batches. Resumable: run it again after a crash."""
    from appliance.errors import Conflict

    app = cli_state().appliance()
    size = batch_size or app.settings.keys.rotation_batch_size
    with app.store.read() as session:
        before = {str(k): n for k, n in app.keys.sealed_counts(session).items()}
    with audited("keys.rotate_begin", resource_type="key_versions") as (session, info):
        target, resumed = app.keys.begin_rotation(session)
        old = [v for v in app.keys.sealer.versions if v != target]
        info.update(resource_id=target, from_versions=old, to_version=target, resumed=resumed, counts=before)
        pending = app.keys.pending_count(session)
    verb = "resuming the rotation to" if resumed else "created"
    click.echo(f"{verb} data key version {target}; {pending} sealed value(s) to re-seal in batches of {size}")
    resealed = 0
    for _attempt in range(5):
        resealed += app.keys.reseal_pending(app.store, batch_size=size, progress=_Progress(pending))
        with app.store.read() as session:
            if app.keys.pending_count(session):
                continue  # a writer sealed under the old version while this pass ran: scan again
        # finish_rotation counts again inside this transaction and refuses if a writer raced it.
        with audited("keys.rotate", resource_type="key_versions") as (session, info):
            counts_after = {str(k): n for k, n in app.keys.sealed_counts(session).items()}
            retired = app.keys.finish_rotation(session)
            info.update(resource_id=target, to_version=target, retired_versions=retired, resealed=resealed,
                        counts_before=before, counts_after=counts_after)
        click.echo(f"rotation complete: {resealed} value(s) re-sealed under version {target}; "
                   f"retired version(s) {', '.join(map(str, retired)) or 'none'} (wrapped keys wiped)")
        return
    raise Conflict("rotation incomplete: values keep appearing under an old data key; run `vigatra keys rotate` again")


# -- rewrap ----------------------------------------------------------------------------------------


def _new_keys_settings(settings: Any, opts: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Settings pointing at the target provider, and the keys section to write for it."""
    from appliance.settings import settings_from_mapping

    section = keys_section(settings.data_dir, opts)
    validated = settings_from_mapping({"data_dir": str(settings.data_dir), "keys": section}, env={})
    keep = {f.name: getattr(settings.keys, f.name) for f in dataclasses.fields(settings.keys)
            if f.name not in PROVIDER_KEYS}
    return dataclasses.replace(settings, keys=dataclasses.replace(validated.keys, **keep)), section


def _config_text(path: Path, section: dict[str, Any]) -> str:
    """The configuration file with its keys section's provider settings replaced."""
    original = path.read_text(encoding="utf-8")
    raw = yaml.safe_load(original) or {}
    if not isinstance(raw, dict):
        raise click.ClickException(f"{path} does not hold a mapping")
    old = raw.get("keys") or {}
    raw["keys"] = {**{k: v for k, v in old.items() if k not in PROVIDER_KEYS}, **section}
    header = "".join(line for line in original.splitlines(keepends=True)[:20] if line.startswith("#"))
    return header + yaml.safe_dump(raw, sort_keys=False)


def _replace_atomically(path: Path, text: str) -> None:
    """Write next to ``path`` with its mode, fsync, rename over it: a crash leaves old or new, never half."""
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@keys.command("rewrap")
@key_options
@click.option("--to-provider", "to_provider", type=click.Choice(PROVIDERS), required=True,
              help="The provider whose KEK will wrap the data keys.")
@click.option("--create-key", is_flag=True, help="Create the KEK in the target provider first (file, keyring, pkcs11).")
@click.option("--update-config", is_flag=True, help="Rewrite the keys section of the configuration file "
              "(atomically) instead of printing the lines to set.")
@handle_errors
def keys_rewrap(to_provider: str, create_key: bool, update_config: bool, **key_opts: Any) -> None:
    """Move the data keys to a new KEK (e.g. file -> HSM) in one transaction."""
    from appliance.crypto import provider_from_settings

    state = cli_state()
    settings = state.settings()
    key_opts["key_provider"] = to_provider
    new_settings, section = _new_keys_settings(settings, key_opts)
    config_path = Path(settings.source)
    new_text = _config_text(config_path, section) if update_config else ""
    app = state.appliance()  # opens the DEKs with the current provider: fails here if it cannot
    old_kek = app.keys.provider.kek_id()
    target = provider_from_settings(new_settings)
    if create_key:
        if to_provider not in CREATABLE:
            fail(f"--create-key: the {to_provider} provider cannot create a KEK; provide it and run again")
        click.echo(target.create())
    target.check()
    new_kek = target.kek_id()
    try:
        with audited("keys.rewrap", resource_type="key_versions", detail={
                "from_provider": app.keys.provider.name, "from_kek": old_kek, "to_provider": target.name,
                "to_kek": new_kek}) as (session, info):
            count = app.keys.rewrap(session, target)
            # The audit signing key is derived from the KEK: a signed rekey checkpoint links the old
            # key to the new one, so checkpoints written before the move still verify.
            from appliance.audit.checkpoints import signer_for, signer_from, write_rekey_checkpoint

            old_signer, new_signer = signer_for(app), signer_from(target)
            if new_signer.key_id != old_signer.key_id:
                write_rekey_checkpoint(session, new_signer, old_signer.public_pem, app.settings.appliance_id)
            info.update(resource_id="all", rewrapped=count)
    finally:
        target.close()
    click.echo(f"rewrapped {count} data key(s): {old_kek} -> {new_kek}")
    if new_kek == old_kek:
        click.echo("the new provider holds the same KEK: derived keys are unchanged")
    lines = yaml.safe_dump({"keys": section}, sort_keys=False)
    if update_config:
        try:
            _replace_atomically(config_path, new_text)
        except OSError as exc:
            click.echo(lines, nl=False)
            fail(f"the data keys are now wrapped by the {target.name} provider, but {config_path} could not be "
                 f"rewritten ({exc.strerror}); set the lines above in its keys section before restarting")
        click.echo(f"updated the keys section of {config_path}")
    else:
        click.echo(f"set these lines in the keys section of {config_path} (replacing the provider settings):")
        click.echo(lines, nl=False)
    click.echo("restart every vigatra process so it uses the new provider. Keys derived from the KEK change with "
               "it: signed-in sessions and JWTs end, connection key fingerprints are computed under a new key, "
               "and audit checkpoints are signed with a new key (keep the old public key to verify older ones).",
               err=True)


# `--to-provider` names the target; the shared `--key-provider` flag of `init` would only confuse here.
keys_rewrap.params = [p for p in keys_rewrap.params if p.name != "key_provider"]


# -- verify ----------------------------------------------------------------------------------------


@keys.command("verify")
@handle_errors
def keys_verify() -> None:
    """Open every sealed value; name each that fails (table/column/row, never contents); exit 1 if any."""
    from appliance.services.keys import record_integrity_failure

    app = cli_state().appliance()
    with app.store.read() as session:
        ok, failures = app.keys.verify(session)
    for f in failures:
        click.echo(f"FAILED {f.table}.{f.column} row {f.row_id}: {f.reason}")
    with audited("keys.verify", resource_type="key_versions", detail={"opened": ok, "failed": len(failures)}
                 ) as (session, info):
        info["resource_id"] = "all"
        for f in failures:
            if f.integrity:
                record_integrity_failure(session, f.table, f.column, f.row_id, f.reason)
    if failures:
        click.echo(f"vigatra: {len(failures)} sealed value(s) failed to open ({ok} opened)", err=True)
        sys.exit(1)
    click.echo(f"all {ok} sealed value(s) open")


__all__ = ["keys"]
