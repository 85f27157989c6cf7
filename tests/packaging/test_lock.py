"""offline-wheels/requirements.lock: every runtime dependency of pyproject.toml pinned exactly,
within its range, with hashes, and nothing of the build machine's index settings in it."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.packaging.tools import LOCK, REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RUNTIME = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    """name -> (exact version, sha256 hashes), from the pip-compile output."""
    text = LOCK.read_text().replace("\\\n", " ")
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement, *options = line.split()
        name, sep, version = requirement.partition("==")
        assert sep, f"not pinned with ==: {requirement}"
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=sha256:")]
        entries[canonicalize_name(name)] = (version, hashes)
    return entries


ENTRIES = lock_entries()


@pytest.mark.parametrize("requirement", RUNTIME, ids=str)
def test_runtime_dependency_pinned_in_range(requirement: Requirement) -> None:
    name = canonicalize_name(requirement.name)
    assert name in ENTRIES, f"{requirement} is not in the lock: run `make lock`"
    version, _hashes = ENTRIES[name]
    assert requirement.specifier.contains(version, prereleases=True), (
        f"lock pins {name}=={version}, outside pyproject's {requirement.specifier}: run `make lock`")


@pytest.mark.parametrize("requirement", [r for r in RUNTIME if r.extras], ids=str)
def test_extras_are_locked_too(requirement: Requirement) -> None:
    """psycopg[binary] needs psycopg-binary; --strip-extras lists it as its own pin."""
    needed = []
    for text in importlib.metadata.requires(requirement.name) or []:
        dependency = Requirement(text)
        if dependency.marker and any(dependency.marker.evaluate({"extra": extra}) for extra in requirement.extras):
            needed.append(canonicalize_name(dependency.name))
    assert needed, f"{requirement}: no dependency behind its extras"
    missing = [n for n in needed if n not in ENTRIES]
    assert not missing, f"{requirement} needs {missing}, not in the lock"


def test_every_pin_has_hashes() -> None:
    unhashed = [name for name, (_version, hashes) in ENTRIES.items() if not hashes]
    assert not unhashed, f"pins without --hash (pip --require-hashes refuses them): {unhashed}"
    for _version, hashes in ENTRIES.values():
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)


def test_lock_names_no_index_or_local_path() -> None:
    # The lock ships to customers: no mirror, no local path of the machine that made it.
    text = LOCK.read_text()
    for option in ("--index-url", "--extra-index-url", "--find-links", "--trusted-host", "file://"):
        assert option not in text, f"{option} in the lock: generate it with `make lock`"


def test_lock_holds_runtime_dependencies_only() -> None:
    dev = {canonicalize_name(Requirement(t).name) for t in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert not dev & set(ENTRIES), f"dev tools in the runtime lock: {sorted(dev & set(ENTRIES))}"
