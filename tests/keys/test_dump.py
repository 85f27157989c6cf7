"""A full copy of the database holds ciphertext only (issue 3 tests; SECURITY.md reviewer test 4).

Known secrets are stored the way onboarding stores them, then the database is dumped as an
attacker with the data but not the KEK would: the SQLite file with its -wal and -shm, and
`pg_dump` of the PostgreSQL database. No secret appears, in raw, base64, base64url or hex form;
a copy opened next to another KEK, or none, refuses with "KEK unavailable".
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from appliance.crypto import provider_from_settings
from appliance.errors import KeyProviderError
from appliance.services.keys import KeyService
from appliance.store.session import Store, make_engine
from tests.keys.conftest import Box, Seeded, write_kek
from tests.support.pg import PostgresCluster, find_pg_bin


def forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), base64.b64encode(raw).rstrip(b"="),
            raw.hex().encode(), raw.hex().upper().encode(), secret.encode("utf-16-le")]


def assert_no_secret(dump: bytes, seeded: Seeded, where: str) -> None:
    assert len(seeded.values) >= 10
    for secret in seeded.secrets():
        for form in forms(secret):
            assert form not in dump, f"a seeded secret appears in {where}"


def sqlite_files(box: Box) -> dict[str, bytes]:
    path = Path(make_url(box.db_url).database or "")
    return {p.name: p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()}


def pg_dump(cluster: PostgresCluster, url: str) -> bytes:
    bin_dir = cluster.bin_dir or find_pg_bin()
    if bin_dir is None or not (bin_dir / "pg_dump").exists():
        pytest.skip("pg_dump not found next to initdb")
    target = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    result = subprocess.run([str(bin_dir / "pg_dump"), "--no-owner", target], capture_output=True, check=True,
                            user=cluster.run_as, timeout=120, cwd="/")
    return result.stdout


def refuses_without_the_kek(box: Box, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other-kek.key"
    write_kek(other)
    box.write_config(provider="file", file_path=other)
    keys = KeyService(provider_from_settings(box.settings))
    with store.read() as session, pytest.raises(KeyProviderError, match="KEK unavailable"):
        keys.load(session)
    monkeypatch.delenv("VIGATRA_TEST_DUMP_KEK", raising=False)
    box.write_config(provider="env", env_var="VIGATRA_TEST_DUMP_KEK")
    keys = KeyService(provider_from_settings(box.settings))
    with store.read() as session, pytest.raises(KeyProviderError, match="KEK unavailable"):
        keys.load(session)
    result = box.cli("keys", "verify")
    assert result.exit_code == 1 and "KEK unavailable" in result.output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_file_wal_and_shm_hold_no_secret(box: Box, keys: KeyService, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seeded = box.seed(keys, connections=4, users=2)
    box.cli("keys", "rotate", "--batch-size", "3")  # old ciphertext replaced in place (secure_delete)
    live = sqlite_files(box)
    assert "vigatra.db-wal" in live  # the WAL is part of what a thief copies
    assert b"@example.test" in b"".join(live.values())  # control: the search does see plaintext columns
    for name, data in live.items():
        assert_no_secret(data, seeded, name)

    copy = tmp_path / "stolen"
    copy.mkdir()
    for name, data in live.items():
        (copy / name).write_bytes(data)
    box.store.dispose()
    for name, data in sqlite_files(box).items():
        assert_no_secret(data, seeded, f"{name} after checkpoint")

    stolen = Store(make_engine(f"sqlite:///{copy / 'vigatra.db'}"))
    try:
        with stolen.read() as session:  # the copy is complete: with the KEK everything opens
            ok, failures = box.service().verify(session)
        assert (ok, failures) == (len(seeded.values), [])
        box.db_url = f"sqlite:///{copy / 'vigatra.db'}"
        box.raw["database"] = {"url": box.db_url}
        refuses_without_the_kek(box, stolen, tmp_path, monkeypatch)
    finally:
        stolen.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_pg_dump_holds_no_secret(box: Box, keys: KeyService, pg_cluster: PostgresCluster, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seeded = box.seed(keys, connections=4, users=2)
    dump = pg_dump(pg_cluster, box.db_url)
    assert b"COPY public.connections" in dump and b"\\\\x" in dump  # bytea columns are in it, hex-encoded
    assert b"@example.test" in dump  # control: the search does see plaintext columns
    assert_no_secret(dump, seeded, "pg_dump output")

    # Restore the dump into a new database: the copy opens with the KEK and refuses without it.
    restored_url = pg_cluster.fresh_database(migrated=False)
    psql = (pg_cluster.bin_dir or find_pg_bin() or Path("/nonexistent")) / "psql"
    if not psql.exists():
        pytest.skip("psql not found next to initdb")
    target = make_url(restored_url).set(drivername="postgresql").render_as_string(hide_password=False)
    subprocess.run([str(psql), "-q", "-v", "ON_ERROR_STOP=1", target], input=dump, capture_output=True, check=True,
                   user=pg_cluster.run_as, timeout=120, cwd="/")
    restored = Store(make_engine(restored_url))
    try:
        with restored.read() as session:
            ok, failures = box.service().verify(session)
        assert (ok, failures) == (len(seeded.values), [])
        box.raw["database"] = {"url": restored_url}
        refuses_without_the_kek(box, restored, tmp_path, monkeypatch)
    finally:
        restored.dispose()

