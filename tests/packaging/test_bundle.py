"""packaging/build-bundle.sh end to end: build the tarball (downloads the locked wheels from the
package registry), check its members and SHA256SUMS, dry-run its install.sh, then install it
offline into a fresh venv exactly as install.sh does and initialise an appliance with it."""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from tests.packaging.test_lock import ENTRIES
from tests.packaging.tools import BUILD_BUNDLE_SH

pytestmark = pytest.mark.slow  # about a minute: the download, the wheel build, an install

FILES = {
    "install.sh", "README.md", "BUNDLE-INFO", "SHA256SUMS", "config/vigatra.example.yaml",
    "offline-wheels/requirements.lock", "offline-wheels/README.md",
    "systemd/vigatra.service", "systemd/key-provider-file.conf", "systemd/key-provider-pkcs11.conf",
    "packaging/nginx/vigatra.conf", "packaging/caddy/Caddyfile",
}
# pip without the machine's configuration: what install.sh does on a server.
OFFLINE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tarball, extracted bundle directory), built once per test session.

    Under xdist the workers share the session's temp root and take turns on a lock, so only the
    first one builds (the xdist_group marker alone does not keep these tests on one worker).
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    with (shared / "bundle.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out, extracted = shared / "bundle-out", shared / "bundle"
        if not extracted.is_dir():
            result = subprocess.run(["sh", str(BUILD_BUNDLE_SH), "--out", str(out), "--python", sys.executable],
                                    capture_output=True, text=True, timeout=900, check=False)
            assert result.returncode == 0, result.stderr[-3000:]
            tarball = Path(result.stdout.strip().splitlines()[-1])
            assert tarball.is_file() and tarball.parent == out
            with tarfile.open(tarball) as tar:
                tar.extractall(extracted / "tmp", filter="data")
            (extracted / "tmp").rename(extracted / "done")
    (tarball,) = out.glob("*.tar.gz")
    (bundle,) = (extracted / "done").iterdir()
    return tarball, bundle


def test_tarball_holds_the_expected_members(built: tuple[Path, Path]) -> None:
    tarball, bundle = built
    with tarfile.open(tarball) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
    top = bundle.name
    assert re.fullmatch(r"vigatra-\d+\.\d+\.\d+.*-py3\d+-\w+", top)
    relative = {n.removeprefix(f"{top}/") for n in names}
    assert all(n.startswith(f"{top}/") for n in names)
    assert relative >= FILES, f"missing: {sorted(FILES - relative)}"
    assert [n for n in relative if re.fullmatch(r"dist/vigatra-[^/]+-py3-none-any\.whl", n)]
    with tarfile.open(tarball) as tar:
        assert tar.getmember(f"{top}/install.sh").mode & 0o111


def test_every_locked_package_has_its_wheel(built: tuple[Path, Path]) -> None:
    _tarball, bundle = built
    wheels = {canonicalize_name(parse_wheel_filename(p.name)[0]): str(parse_wheel_filename(p.name)[1])
              for p in (bundle / "offline-wheels").glob("*.whl")}
    assert wheels == {name: version for name, (version, _hashes) in ENTRIES.items()}


def test_sha256sums_cover_every_file(built: tuple[Path, Path]) -> None:
    _tarball, bundle = built
    result = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=bundle, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = {line.split("  ", 1)[1] for line in (bundle / "SHA256SUMS").read_text().splitlines()}
    present = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file() and p.name != "SHA256SUMS"}
    assert listed == present


def test_bundled_install_sh_dry_run_passes_its_checks(built: tuple[Path, Path], tmp_path: Path) -> None:
    _tarball, bundle = built
    if Path("/etc/vigatra/vigatra.yaml").exists():
        pytest.skip("Vigatra is installed on this machine")
    result = subprocess.run(["sh", str(bundle / "install.sh"), "--dry-run", "--prefix", str(tmp_path / "prefix"),
                             "--python", sys.executable], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Next steps" in result.stdout


def test_installs_offline_with_hashes_and_initialises(built: tuple[Path, Path], tmp_path: Path) -> None:
    """The commands install.sh runs, without network or the host's pip settings; then `vigatra init`
    and `doctor` from that venv prove no runtime dependency is missing from the lock."""
    _tarball, bundle = built
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--quiet"]
    wheels = bundle / "offline-wheels"
    (app_wheel,) = (bundle / "dist").glob("vigatra-*.whl")
    # --no-compile only saves time here; install.sh compiles, as the service cannot write to /opt.
    for args in (["install", "--no-compile", "--no-index", "--find-links", str(wheels), "--only-binary=:all:",
                  "--require-hashes", "-r", str(wheels / "requirements.lock")],
                 ["install", "--no-compile", "--no-index", "--no-deps", str(app_wheel)],
                 ["check"]):
        result = subprocess.run([*pip, *args], env=OFFLINE_ENV, capture_output=True, text=True, timeout=600,
                                check=False)
        assert result.returncode == 0, f"pip {args[0]}: {result.stdout}{result.stderr}"
    vigatra = str(venv / "bin" / "vigatra")
    data = tmp_path / "data"
    env = {**OFFLINE_ENV, "HOME": str(tmp_path)}
    result = subprocess.run([vigatra, "init", "--data-dir", str(data), "--key-provider", "file",
                             "--key-file", str(tmp_path / "kek.key"), "--yes"],
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "admin password: " in result.stdout
    result = subprocess.run([vigatra, "--config", str(data / "vigatra.yaml"), "doctor"], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # One version: the wheel's name, what the installed command prints and the source tree's metadata.
    wheel_version = str(parse_wheel_filename(app_wheel.name)[1])
    result = subprocess.run([vigatra, "--version"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.stdout.strip() == f"vigatra, version {wheel_version}"
    assert wheel_version == importlib.metadata.version("vigatra")
