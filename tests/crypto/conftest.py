"""Fixtures for the crypto tests: settings pointing at temporary key locations, and a SoftHSM2 token.

SoftHSM2 reads SOFTHSM2_CONF when the PKCS#11 module is initialised, and python-pkcs11 loads a
module once per process, so one token directory serves the whole session; each test uses its own
key labels on it.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.crypto.kek import KeyProvider
from appliance.settings import Settings, settings_from_mapping

SOFTHSM_MODULES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/local/lib/softhsm/libsofthsm2.so"),
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def make_settings(data_dir: Path, **keys: Any) -> Settings:
    mapping = {k: str(v) if isinstance(v, Path) else v for k, v in keys.items()}
    return settings_from_mapping({"data_dir": str(data_dir), "keys": mapping})


def write_key_file(path: Path, content: bytes | str | None = None, mode: int = 0o400) -> bytes:
    """Write a KEK file (random unless content is given) with the given mode; return the raw key."""
    raw = os.urandom(32)
    text = content if content is not None else base64.b64encode(raw).decode("ascii") + "\n"
    data = text.encode("ascii") if isinstance(text, str) else text
    path.write_bytes(data)
    path.chmod(mode)
    return raw


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def etc_dir(tmp_path: Path) -> Path:
    d = tmp_path / "etc"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def closing() -> Iterator[Callable[[KeyProvider], KeyProvider]]:
    """Register providers to close at the end of the test (HSM sessions hold the token login)."""
    providers: list[KeyProvider] = []

    def register(provider: KeyProvider) -> KeyProvider:
        providers.append(provider)
        return provider

    yield register
    for provider in providers:
        provider.close()


@dataclass(frozen=True)
class SoftHsm:
    module: Path
    conf: Path
    token_label: str
    pin: str
    so_pin: str

    def settings(self, data_dir: Path, pin_file: Path, key_label: str | None = None, **extra: Any) -> Settings:
        keys: dict[str, Any] = {
            "provider": "pkcs11", "pkcs11_module": self.module, "pkcs11_token_label": self.token_label,
            "pkcs11_key_label": key_label or f"kek-{uuid.uuid4().hex[:12]}", "pkcs11_pin_file": pin_file}
        return make_settings(data_dir, **{**keys, **extra})


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    util = shutil.which("softhsm2-util")
    module = next((m for m in SOFTHSM_MODULES if m.exists()), None)
    if util is None or module is None:
        why = ("softhsm2-util not found (install Debian package softhsm2)" if util is None
               else f"libsofthsm2.so not found in {', '.join(map(str, SOFTHSM_MODULES))}")
        if in_ci():
            pytest.fail(f"PKCS#11 tests cannot run in CI: {why}", pytrace=False)
        pytest.skip(f"PKCS#11 tests skipped: {why}")
    root = tmp_path_factory.mktemp("softhsm")
    tokens = root / "tokens"
    tokens.mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
                    "slots.removable = false\n", encoding="utf-8")
    hsm = SoftHsm(module=module, conf=conf, token_label="vigatra-test", pin="4711-user-pin", so_pin="so-pin-0815")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run([util, "--init-token", "--free", "--label", hsm.token_label, "--pin", hsm.pin,
                        "--so-pin", hsm.so_pin], check=True, capture_output=True, env=os.environ.copy())
        import pkcs11

        # If the module was initialised earlier in this process it still reads the old config.
        pkcs11.lib(str(module)).reinitialize()
        yield hsm
