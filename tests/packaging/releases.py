"""Signed releases for the packaging tests, built once per test session by packaging/build-bundle.sh.

- release A: this repository, for this machine's Python and CPU (the locked wheels come from the
  package registry, as a release manager's build fetches them);
- release B: the same with the version raised by one patch level and one more migration (a table
  ``upgrade_probe``), built from A's wheels with --wheels-from: the upgrade the install tests run.

Both are signed with a throwaway key made here. Under xdist the workers share the session's temp
root and take turns on a lock, so each release is built by the first worker that needs it.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging.tools import BUILD_BUNDLE_SH, REPO

RELEASE_SIGN = REPO / "packaging" / "release_sign.py"
PROBE_REVISION = "9001"


@dataclass(frozen=True)
class Release:
    directory: Path  # vigatra-<version>/ with install.sh, the tarball, SHA256SUMS(.minisig)
    version: str
    tarball: Path
    public_key: Path
    secret_key: Path

    def unpacked(self, into: Path) -> Path:
        """The bundle unpacked under ``into`` (a fresh copy each call)."""
        into.mkdir(parents=True, exist_ok=True)
        with tarfile.open(self.tarball) as tar:
            tar.extractall(into, filter="data")
        (bundle,) = [p for p in into.iterdir() if p.is_dir() and p.name.startswith("vigatra-")]
        return bundle


def shared_dir(factory: pytest.TempPathFactory) -> Path:
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def signing_keys(shared: Path) -> tuple[Path, Path]:
    secret, public = shared / "release-test.key", shared / "release-test.pub"
    with (shared / "keys.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not secret.exists():
            subprocess.run([sys.executable, str(RELEASE_SIGN), "keygen", "--secret-key", str(secret),
                            "--public-key", str(public)], check=True, capture_output=True)
    return secret, public


def _build(out: Path, secret: Path, *extra: str) -> Path:
    result = subprocess.run(["sh", str(BUILD_BUNDLE_SH), "--sign-key", str(secret), "--out", str(out),
                             "--python", sys.executable, *extra], capture_output=True, text=True, timeout=1200,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


def _release(directory: Path, public: Path, secret: Path) -> Release:
    (tarball,) = directory.glob("vigatra-*.tar.gz")
    version = directory.name.removeprefix("vigatra-")
    return Release(directory, version, tarball, public, secret)


def release_a(factory: pytest.TempPathFactory) -> Release:
    shared = shared_dir(factory)
    secret, public = signing_keys(shared)
    with (shared / "release-a.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "release-a" / "done"
        if not done.exists():
            built = _build(shared / "release-a" / "out", secret)
            done.write_text(str(built))
    return _release(Path(done.read_text()), public, secret)


def next_patch(version: str) -> str:
    major, minor, patch = re.match(r"(\d+)\.(\d+)\.(\d+)", version).groups()  # type: ignore[union-attr]
    return f"{major}.{minor}.{int(patch) + 1}"


def release_b(factory: pytest.TempPathFactory) -> Release:
    a = release_a(factory)
    shared = shared_dir(factory)
    secret, public = signing_keys(shared)
    with (shared / "release-b.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "release-b" / "done"
        if not done.exists():
            work = shared / "release-b"
            source = work / "src"
            shutil.rmtree(source, ignore_errors=True)
            for part in ("pyproject.toml", "README.md", "install.sh", "appliance", "config", "systemd",
                         "offline-wheels", "packaging"):
                target = source / part
                if (REPO / part).is_dir():
                    shutil.copytree(REPO / part, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO / part, target)
            newer = next_patch(a.version)
            pyproject = source / "pyproject.toml"  # the one place the version is written
            pyproject.write_text(pyproject.read_text().replace(f'"{a.version}"', f'"{newer}"'))
            from appliance.store.migrate import head_revision

            (source / "appliance" / "store" / "migrations" / "versions" / f"{PROBE_REVISION}_upgrade_probe.py"
             ).write_text(f'''"""An upgrade with a migration (install tests only)."""

import sqlalchemy as sa
from alembic import op

revision = "{PROBE_REVISION}"
down_revision = "{head_revision()}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("upgrade_probe", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("upgrade_probe")
''')
            wheels = a.unpacked(work / "a-bundle") / "offline-wheels"
            built = _build(work / "out", secret, "--source", str(source), "--wheels-from", str(wheels))
            done.write_text(str(built))
    return _release(Path(done.read_text()), public, secret)
