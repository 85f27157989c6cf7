"""`vigatra keys rewrap`: move the data keys to another KEK, e.g. file -> HSM (issue 3 item 4).

The PKCS#11 part runs the CLI in subprocesses against a SoftHSM2 token of this test's own:
SoftHSM2 reads SOFTHSM2_CONF once per process and python-pkcs11 loads a module once per process,
so an in-process token here would clash with the one tests/crypto initialises for the session.
Meanwhile this process keeps opening every secret with the DEKs it loaded before (rewrap changes
only their wrapping), and afterwards the old provider can no longer open the data keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from appliance.crypto import provider_from_settings
from appliance.errors import KeyProviderError
from appliance.services.keys import KeyService, open_connection_credentials
from appliance.store.models import AuditEvent, KeyVersion
from tests.keys.conftest import REPO, Box, Seeded, Token

OPEN_ALL = """
import hashlib, json, sys
from appliance.services.context import Appliance
from appliance.services.keys import iter_sealed
from appliance.settings import load_settings

app = Appliance(load_settings(sys.argv[1])).open()
try:
    with app.store.read() as s:
        print(json.dumps({f"{t}.{c}.{r}": hashlib.sha256(app.keys.open(s, b, table=t, column=c, row_id=r)).hexdigest()
                          for t, c, r, b in iter_sealed(s)}))
finally:
    app.close()
"""


def digests(seeded: Seeded) -> dict[str, str]:
    return {f"{t}.{c}.{r}": hashlib.sha256(v.encode()).hexdigest() for (t, c, r), v in seeded.values.items()}


def old_provider_refuses(box: Box, kek_file: Path) -> None:
    old = dict(box.raw)
    box.write_config(provider="file", file_path=kek_file)
    try:
        with box.store.read() as session, pytest.raises(KeyProviderError, match="KEK unavailable"):
            KeyService(provider_from_settings(box.settings)).load(session)
    finally:
        box.raw = old
        box.config.write_text(yaml.safe_dump(old, sort_keys=False), encoding="utf-8")


class Readers:
    """Threads of this process opening every connection's credentials until stopped."""

    def __init__(self, box: Box, keys: KeyService, seeded: Seeded) -> None:
        self.box, self.keys, self.seeded = box, keys, seeded
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.opened = 0
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.stop.is_set():
            for cid in self.seeded.connection_ids:
                try:
                    with self.box.store.read() as session:
                        creds = open_connection_credentials(session, self.keys, cid)
                    if creds.api_key != self.seeded.values[("connections", "api_key_sealed", cid)]:
                        self.errors.append(f"wrong value for {cid}")
                    self.opened += 1
                except Exception as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> Readers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def test_rewrap_file_to_pkcs11(box: Box, keys: KeyService, token: Token) -> None:
    seeded = box.seed(keys, connections=4, users=1)
    old_kek_file = box.kek_file
    flags = ["--pkcs11-module", str(token.module), "--pkcs11-token", token.label, "--pkcs11-key-label",
             "vigatra-kek-test", "--pkcs11-pin-file", str(token.pin_file)]
    with Readers(box, keys, seeded) as readers:
        result = box.cli_subprocess("keys", "rewrap", "--to-provider", "pkcs11", *flags, "--create-key",
                                    "--update-config", env=token.env)
    assert result.returncode == 0, result.stderr
    assert readers.errors == [] and readers.opened > 0
    assert "generated non-extractable AES-256 key 'vigatra-kek-test'" in result.stdout
    assert "rewrapped 1 data key(s): file:" in result.stdout and " -> pkcs11:" in result.stdout
    assert f"updated the keys section of {box.config}" in result.stdout
    assert "signed-in sessions and JWTs end" in result.stderr

    config = yaml.safe_load(box.config.read_text())
    assert config["keys"] == {"provider": "pkcs11", "pkcs11_module": str(token.module),
                              "pkcs11_token_label": token.label, "pkcs11_key_label": "vigatra-kek-test",
                              "pkcs11_pin_file": str(token.pin_file)}
    assert config["database"] == box.raw["database"] and config["auth"] == box.raw["auth"]
    with box.store.read() as session:
        assert [v.kek_id.split(":")[0] for v in session.execute(select(KeyVersion)).scalars()] == ["pkcs11"]
        rewrap = next(json.loads(e.detail) for e in session.execute(select(AuditEvent)).scalars()
                      if e.action == "keys.rewrap")
    assert rewrap["from_provider"] == "file" and rewrap["to_provider"] == "pkcs11" and rewrap["rewrapped"] == 1

    # Everything opens with the new provider, in a new process, to the very same plaintexts...
    opened = subprocess.run([sys.executable, "-c", OPEN_ALL, str(box.config)], capture_output=True, text=True,
                            cwd=REPO, env={**os.environ, **token.env}, timeout=120, check=False)
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout) == digests(seeded)
    verify = box.cli_subprocess("keys", "verify", env=token.env)
    assert verify.returncode == 0 and f"all {len(seeded.values)} sealed value(s) open" in verify.stdout
    status = box.cli_subprocess("keys", "status", env=token.env)
    assert status.returncode == 0 and "pkcs11 provider: keys 'vigatra-kek-test'" in status.stdout
    rotate = box.cli_subprocess("keys", "rotate", env=token.env)  # new DEKs are wrapped inside the HSM
    assert rotate.returncode == 0, rotate.stderr
    # ...and not with the old one.
    old_provider_refuses(box, old_kek_file)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_rewrap_file_to_another_file_prints_the_lines_to_set(box: Box, keys: KeyService, tmp_path: Path) -> None:
    seeded = box.seed(keys, connections=2)
    config_before = box.config.read_text()
    new_file = box.etc / "kek-2.key"
    with Readers(box, keys, seeded) as readers:
        result = box.cli("keys", "rewrap", "--to-provider", "file", "--key-file", str(new_file), "--create-key")
    assert result.exit_code == 0, result.output
    assert readers.errors == []
    assert f"wrote a new KEK to {new_file}" in result.output
    assert "set these lines in the keys section" in result.output
    assert f"keys:\n  provider: file\n  file_path: {new_file}\n" in result.output
    assert box.config.read_text() == config_before  # printed, not written
    old_provider_refuses(box, box.kek_file)
    box.write_config(provider="file", file_path=new_file)
    assert box.cli("keys", "verify").exit_code == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_rewrap_to_an_unavailable_hsm_changes_nothing(box: Box, keys: KeyService, tmp_path: Path) -> None:
    box.seed(keys, connections=1)
    with box.store.read() as session:
        before = [(v.version, v.wrapped_key, v.kek_id) for v in session.execute(select(KeyVersion)).scalars()]
    config_before = box.config.read_text()
    missing = tmp_path / "no-such-pkcs11.so"
    result = box.cli("keys", "rewrap", "--to-provider", "pkcs11", "--pkcs11-module", str(missing),
                     "--pkcs11-pin-file", str(box.kek_file), "--update-config")
    assert result.exit_code == 1
    assert result.output.strip() == f"vigatra: pkcs11 provider: module {missing} does not exist (keys.pkcs11_module)"
    with box.store.read() as session:
        assert [(v.version, v.wrapped_key, v.kek_id) for v in session.execute(select(KeyVersion)).scalars()] == before
    assert box.config.read_text() == config_before
    refused = box.cli("keys", "rewrap", "--to-provider", "env", "--key-env", "VIGATRA_TEST_NOPE", "--create-key")
    assert refused.exit_code == 1 and "cannot create a KEK" in refused.output
