"""Fixtures for the key tests: an appliance configuration on each database, seeded secrets, the CLI.

``box`` is a configuration file (file provider, KEK outside the data dir, mode 0400) on the
``db_url`` database (SQLite and PostgreSQL), with the first data key created, a KeyService that
plays "the serving process", and helpers to run ``vigatra`` in-process or as a subprocess.
Secrets are seeded through :func:`seal_credentials`, the path onboarding uses.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import bindparam, insert, select, update

from appliance.crypto import provider_from_settings
from appliance.services.keys import KeyService, seal_credentials
from appliance.settings import Settings, load_settings
from appliance.store.models import Connection, Employee, User
from appliance.store.session import Store
from tests.crypto.conftest import SOFTHSM_MODULES, in_ci
from tests.support.app import FAST_ARGON2

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from appliance.cli.main import main; main()"]


def new_kek_text() -> str:
    return base64.b64encode(os.urandom(32)).decode("ascii")


def write_kek(path: Path, text: str | None = None, mode: int = 0o400) -> str:
    text = text or new_kek_text()
    if path.exists():
        path.chmod(0o600)
        path.unlink()
    path.write_text(text + "\n", encoding="ascii")
    path.chmod(mode)
    return text


@dataclass
class Seeded:
    """Plaintexts by (table, column, row id), as seeded; the tests compare against them."""

    values: dict[tuple[str, str, int], str] = field(default_factory=dict)
    connection_ids: list[int] = field(default_factory=list)
    user_ids: list[int] = field(default_factory=list)

    def secrets(self) -> list[str]:
        return list(self.values.values())


@dataclass
class Box:
    store: Store
    db_url: str
    config: Path
    data_dir: Path
    etc: Path
    kek_file: Path
    raw: dict[str, Any]

    @property
    def settings(self) -> Settings:
        return load_settings(self.config, env={})

    def service(self, settings: Settings | None = None) -> KeyService:
        """A KeyService as a freshly started process would have it, keys loaded."""
        keys = KeyService(provider_from_settings(settings or self.settings))
        with self.store.read() as session:
            keys.load(session)
        return keys

    def write_config(self, **keys_section: Any) -> None:
        self.raw["keys"] = {k: str(v) if isinstance(v, Path) else v for k, v in keys_section.items()}
        self.config.write_text(yaml.safe_dump(self.raw, sort_keys=False), encoding="utf-8")

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        from appliance.cli.main import cli

        return CliRunner().invoke(cli, ["--config", str(self.config), *args], env=env, catch_exceptions=False)

    def cli_subprocess(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
                       ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "--config", str(self.config), *args], capture_output=True, text=True,
                              cwd=REPO, env={**os.environ, **(env or {})}, timeout=timeout, check=False)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([*CLI, "--config", str(self.config), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, **(env or {})})

    def seed(self, keys: KeyService, connections: int = 3, users: int = 1) -> Seeded:
        return seed_secrets(self.store, keys, connections=connections, users=users)


def make_box(db_url: str, store: Store, tmp_path: Path, *, create_kek: bool = True) -> Box:
    data_dir = tmp_path / "data"
    etc = tmp_path / "etc"
    for d in (data_dir, etc):
        d.mkdir(mode=0o700, exist_ok=True)
    kek_file = etc / "kek.key"
    if create_kek:
        write_kek(kek_file)
    raw: dict[str, Any] = {
        "data_dir": str(data_dir), "appliance_id": "keys-test", "database": {"url": db_url},
        "keys": {"provider": "file", "file_path": str(kek_file)},
        "auth": dict(FAST_ARGON2), "poller": {"enabled": False},
    }
    config = etc / "vigatra.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return Box(store, db_url, config, data_dir, etc, kek_file, raw)


@pytest.fixture
def bare_box(db_url: str, store: Store, tmp_path: Path) -> Box:
    """A migrated database without data keys and a configuration whose KEK file does not exist yet."""
    return make_box(db_url, store, tmp_path, create_kek=False)


@pytest.fixture
def box(db_url: str, store: Store, tmp_path: Path) -> Box:
    b = make_box(db_url, store, tmp_path)
    keys = KeyService(provider_from_settings(b.settings))
    with store.unit_of_work() as session:
        keys.create_first(session)
    return b


@pytest.fixture
def keys(box: Box) -> KeyService:
    """The "serving process": loaded once, before anything else happens."""
    return box.service()


def _employee(session: Any) -> int:
    employee = Employee(name="Alice Example", email=f"alice-{secrets.token_hex(4)}@example.test")
    session.add(employee)
    session.flush()
    return int(employee.id)


def seed_secrets(store: Store, keys: KeyService, *, connections: int, users: int = 0) -> Seeded:
    """Connections and users with random, recognisable secrets, sealed the way onboarding seals them."""
    seeded = Seeded()
    with store.unit_of_work() as session:
        employee_id = _employee(session)
        for n in range(connections):
            connection = Connection(employee_id=employee_id, kind="exchange", venue="kraken", label=f"c{n}")
            values = {"api_key_sealed": f"AKEY{secrets.token_hex(12)}",
                      "api_secret_sealed": f"SECRET{secrets.token_urlsafe(30)}",
                      "passphrase_sealed": f"PASS{secrets.token_hex(8)}"}
            seal_credentials(session, keys, connection, values["api_key_sealed"], values["api_secret_sealed"],
                             values["passphrase_sealed"])
            seeded.connection_ids.append(connection.id)
            for column, value in values.items():
                seeded.values[("connections", column, connection.id)] = value
        for n in range(users):
            user = User(username=f"totp-{n}-{secrets.token_hex(3)}", password_hash="$argon2id$unused")
            session.add(user)
            session.flush()
            totp = base64.b32encode(os.urandom(20)).decode("ascii")
            user.totp_secret_sealed = keys.seal(session, totp, table="users", column="totp_secret_sealed",
                                                row_id=user.id)
            seeded.user_ids.append(user.id)
            seeded.values[("users", "totp_secret_sealed", user.id)] = totp
    return seeded


def bulk_seed(store: Store, keys: KeyService, connections: int, *, batch: int = 5000) -> dict[int, tuple[str, ...]]:
    """Thousands of connections quickly: one multi-row INSERT per batch, then executemany UPDATEs."""
    table = Connection.__table__
    sealer = keys.sealer
    out: dict[int, tuple[str, ...]] = {}
    columns = ("api_key_sealed", "api_secret_sealed", "passphrase_sealed")
    with store.unit_of_work() as session:
        employee_id = _employee(session)
    done = 0
    while done < connections:
        count = min(batch, connections - done)
        with store.unit_of_work() as session:
            rows = [{"employee_id": employee_id, "kind": "exchange", "venue": "kraken", "label": f"b{done + i}",
                     "status": "active", "status_reason": "", "address": "", "key_fingerprint": "",
                     "scope_verified": False, "consecutive_failures": 0} for i in range(count)]
            ids = list(session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True),
                                       rows).scalars())
            params = []
            for row_id in ids:
                plain = (f"k{row_id}-{secrets.token_hex(6)}", f"s{row_id}-{secrets.token_hex(12)}", f"p{row_id}")
                out[row_id] = plain
                params.append({"b_id": row_id, **{c: sealer.seal(v, table="connections", column=c, row_id=row_id)
                                                  for c, v in zip(columns, plain, strict=True)}})
            session.execute(update(table).where(table.c.id == bindparam("b_id")), params)
        done += count
    return out


def sealed_rows(store: Store) -> dict[tuple[str, str, int], bytes]:
    from appliance.services.keys import iter_sealed

    with store.read() as session:
        return {(t, c, int(r)): bytes(b) for t, c, r, b in iter_sealed(session)}


def connection(store: Store, connection_id: int) -> Connection:
    with store.read() as session:
        found = session.execute(select(Connection).where(Connection.id == connection_id)).scalar_one()
        session.expunge(found)
        return found


@dataclass(frozen=True)
class Token:
    module: Path
    label: str
    pin_file: Path
    env: dict[str, str]


@pytest.fixture
def token(tmp_path: Path) -> Token:
    """A SoftHSM2 token of the test's own, for subprocesses (SOFTHSM2_CONF in ``env``)."""
    util = shutil.which("softhsm2-util")
    module = next((m for m in SOFTHSM_MODULES if m.exists()), None)
    if util is None or module is None:
        if in_ci():
            pytest.fail("PKCS#11 key tests cannot run in CI: SoftHSM2 is not installed", pytrace=False)
        pytest.skip("SoftHSM2 is not installed (Debian package softhsm2)")
    tokens = tmp_path / "softhsm" / "tokens"
    tokens.mkdir(parents=True)
    conf = tmp_path / "softhsm" / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
                    encoding="utf-8")
    env = {"SOFTHSM2_CONF": str(conf)}
    subprocess.run([util, "--init-token", "--free", "--label", "vigatra-rewrap", "--pin", "2468-pin",
                    "--so-pin", "so-1357"], check=True, capture_output=True, env={**os.environ, **env}, timeout=60)
    pin_file = tmp_path / "etc" / "hsm.pin"
    pin_file.parent.mkdir(mode=0o700, exist_ok=True)
    write_kek(pin_file, "2468-pin")
    return Token(module, "vigatra-rewrap", pin_file, env)
