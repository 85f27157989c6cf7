"""The audit commands through the real CLI (click's CliRunner), on an appliance made by `vigatra init`.

`vigatra audit verify DIR` runs with no configuration at all, as on a regulator's machine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, update

from appliance.audit.chain import COLUMNS, event_hash
from appliance.settings import AuditSettings, Settings, load_settings
from appliance.store.models import AuditChainHead, AuditCheckpoint, AuditEvent
from appliance.store.session import Store
from tests.audit.conftest import Owner, add_events, add_records, event_row, record

DEFAULT_DAYS = AuditSettings().retention_days  # audit.retention_days by default


def run(*args: str, input: str | None = None) -> Result:
    from appliance.cli.main import cli

    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@dataclass
class Installed:
    config: Path
    data_dir: Path
    settings: Settings
    store: Store

    def cli(self, *args: str, input: str | None = None) -> Result:
        return run("--config", str(self.config), *args, input=input)


@pytest.fixture
def installed(db_url: str, tmp_path: Path, kek_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Installed]:
    monkeypatch.delenv("VIGATRA_CONFIG", raising=False)
    data_dir = tmp_path / "data"
    result = run("init", "--data-dir", str(data_dir), "--database-url", db_url, "--key-provider", "env",
                 "--key-env", kek_env, "--yes")
    assert result.exit_code == 0, result.output
    config = data_dir / "vigatra.yaml"
    settings = load_settings(config)
    store = Store.from_settings(settings)
    yield Installed(config, data_dir, settings, store)
    store.dispose()


def test_verify_export_and_verify_offline(installed: Installed, tmp_path: Path) -> None:
    add_events(installed.store, 20)
    assert installed.cli("audit", "checkpoint").exit_code == 0
    result = installed.cli("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "audit trail valid: 21 events, 1 checkpoints" in result.stdout and "last id 21" in result.stdout

    medium = tmp_path / "usb"
    medium.mkdir()
    result = installed.cli("audit", "export", "--dest", str(medium))
    assert result.exit_code == 0, result.output
    assert "exported 21 events (events 1..21, incremental)" in result.stdout
    export_dir = next(medium.iterdir())
    with installed.store.read() as session:
        event = session.execute(select(AuditEvent).where(AuditEvent.action == "audit.export")).scalar_one()
        assert event.actor_type == "system" and event.user_agent.startswith("cli:") and event.method == "CLI"

    pem = tmp_path / "vigatra-audit.pem"
    key = installed.cli("audit", "public-key")
    assert key.exit_code == 0 and key.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    pem.write_text(key.stdout)

    # Offline: no --config, no database, only the export and the public key.
    for target in (export_dir, medium):
        result = run("audit", "verify", str(target), "--public-key", str(pem))
        assert result.exit_code == 0, result.output
        assert "audit export valid: 1 export(s), 21 rows" in result.stdout
    result = run("audit", "verify", str(export_dir))
    assert result.exit_code == 0 and "not pinned" in result.stderr

    with (export_dir / "audit.csv").open("r+b") as handle:
        handle.seek(200)
        byte = handle.read(1)
        handle.seek(200)
        handle.write(b"X" if byte != b"X" else b"Y")
    result = run("audit", "verify", str(export_dir))
    assert result.exit_code == 1 and "audit.csv: SHA-256" in result.stderr

    # The export, its event and its checkpoint are part of a chain that still verifies.
    result = installed.cli("audit", "verify")
    assert result.exit_code == 0, result.output


def test_verify_names_the_first_bad_event(installed: Installed) -> None:
    add_events(installed.store, 30)
    Owner(installed.store).edit(17, user_id=99)
    Owner(installed.store).delete_events(25)
    result = installed.cli("audit", "verify")
    assert result.exit_code == 1
    assert "audit chain broken at event 17" in result.stderr and "contents do not match" in result.stderr


def test_verify_reports_truncation(installed: Installed) -> None:
    add_events(installed.store, 10)
    assert installed.cli("audit", "checkpoint").exit_code == 0
    Owner(installed.store).truncate_tail(6)
    result = installed.cli("audit", "verify")
    assert result.exit_code == 1 and "truncated" in result.stderr and "chain ends at 6" in result.stderr


def test_export_refusals(installed: Installed, tmp_path: Path) -> None:
    inside = installed.data_dir / "exports"
    inside.mkdir()
    result = installed.cli("audit", "export", "--dest", str(inside))
    assert result.exit_code == 1 and "refusing to export into the data directory" in result.stderr
    result = installed.cli("audit", "export", "--dest", str(tmp_path / "missing"))
    assert result.exit_code == 1 and "does not exist" in result.stderr
    result = installed.cli("audit", "export", "--dest", str(tmp_path), "--from", "yesterday")
    assert result.exit_code == 2 and "ISO 8601" in result.output


def test_range_export(installed: Installed, tmp_path: Path) -> None:
    t0 = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    add_records(installed.store, [record(i, timestamp=t0 + dt.timedelta(days=i)) for i in range(10)])
    medium = tmp_path / "usb"
    medium.mkdir()
    result = installed.cli("audit", "export", "--dest", str(medium), "--from", "2026-02-03", "--to",
                           "2026-02-06T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert "exported 3 events (events 4..6, range)" in result.stdout
    assert run("audit", "verify", str(medium)).exit_code == 0


def test_purge_refusals(installed: Installed) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=DEFAULT_DAYS + 30)
    add_records(installed.store, [record(i, timestamp=old) for i in range(3)])
    result = installed.cli("audit", "purge", "--before", "2026-01-01")
    assert result.exit_code == 1 and "inside the retention period" in result.stderr
    # Old events behind a recent one (the `init` event, id 1) are not a prefix of the chain: kept.
    before = (old + dt.timedelta(days=1)).date().isoformat()
    result = installed.cli("audit", "purge", "--before", before, "--yes")
    assert result.exit_code == 0 and "nothing to purge" in result.stdout


def test_purge_with_confirmation(installed: Installed) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=DEFAULT_DAYS + 30)
    # Age the `init` event (id 1) as the owner, rewriting it consistently: the only way for a test to
    # get old events at the start of a chain.
    row = event_row(installed.store, 1)
    row["timestamp"] = old
    new_hash = event_hash([row[c] for c in COLUMNS])
    Owner(installed.store).run(
        update(AuditEvent).where(AuditEvent.id == 1).values(timestamp=old, hash=new_hash),
        update(AuditChainHead).where(AuditChainHead.id == 1).values(last_hash=new_hash))
    add_records(installed.store, [record(i, timestamp=old) for i in range(3)] + [record(9)])
    before = (old + dt.timedelta(days=1)).date().isoformat()
    result = installed.cli("audit", "purge", "--before", before, input="n\n")
    assert result.exit_code == 1 and "Permanently remove 4 audit events (ids 1..4" in result.output
    result = installed.cli("audit", "purge", "--before", before, input="y\n")
    assert result.exit_code == 0, result.output
    assert "purged 4 events (1..4)" in result.stdout
    with installed.store.read() as session:
        assert session.execute(select(AuditCheckpoint.kind)).scalars().all() == ["purge"]
    result = installed.cli("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "events through 4 purged" in result.stdout
