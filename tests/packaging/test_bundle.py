"""packaging/build-bundle.sh end to end: a signed release for this machine's Python and CPU (the locked
wheels downloaded from the package registry), its members, BUNDLE-INFO, SHA256SUMS, the release
signature (checked with the stock minisign tool: the format is minisign's) and the CycloneDX SBOM of
every wheel. Installing it for real is tests/packaging/test_install_flow.py."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from tests.packaging.releases import RELEASE_SIGN, Release, release_a
from tests.packaging.test_lock import ENTRIES
from tests.packaging.tools import require_tool

pytestmark = pytest.mark.slow  # the download and the wheel build, once per session

FILES = {
    "install.sh", "README.md", "BUNDLE-INFO", "SHA256SUMS", "SHA256SUMS.minisig", "sbom.cdx.json",
    "config/vigatra.example.yaml", "offline-wheels/requirements.lock", "offline-wheels/README.md",
    "systemd/vigatra.service", "systemd/key-provider-file.conf", "systemd/key-provider-pkcs11.conf",
    "packaging/nginx/vigatra.conf", "packaging/caddy/Caddyfile",
}
TARGET = f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    return release_a(tmp_path_factory)


@pytest.fixture(scope="module")
def bundle(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return release.unpacked(tmp_path_factory.mktemp("unpacked"))


def test_release_directory_holds_installer_bundle_sbom_and_signed_sums(release: Release) -> None:
    names = {p.name for p in release.directory.iterdir()}
    assert names == {"install.sh", "SHA256SUMS", "SHA256SUMS.minisig", f"vigatra-{release.version}-{TARGET}.tar.gz",
                     f"vigatra-{release.version}-{TARGET}.cdx.json"}
    listed = {line.split("  ", 1)[1] for line in (release.directory / "SHA256SUMS").read_text().splitlines()}
    assert listed == names - {"SHA256SUMS", "SHA256SUMS.minisig"}
    result = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=release.directory,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_release_signature_verifies_with_minisign_and_fails_on_one_changed_byte(release: Release,
                                                                               tmp_path: Path) -> None:
    minisign = require_tool("minisign", "minisign")
    sums = release.directory / "SHA256SUMS"
    result = subprocess.run([minisign, "-V", "-p", str(release.public_key), "-m", str(sums)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    changed = tmp_path / "SHA256SUMS"
    data = bytearray(sums.read_bytes())
    data[0] ^= 0x01
    changed.write_bytes(bytes(data))
    (tmp_path / "SHA256SUMS.minisig").write_bytes((release.directory / "SHA256SUMS.minisig").read_bytes())
    result = subprocess.run([minisign, "-V", "-p", str(release.public_key), "-m", str(changed)], capture_output=True,
                            text=True, check=False)
    assert result.returncode != 0
    ours = subprocess.run([sys.executable, str(RELEASE_SIGN), "verify", "--public-key", str(release.public_key),
                           str(changed)], capture_output=True, text=True, check=False)
    assert ours.returncode == 1 and "does not verify" in ours.stderr


def test_tarball_holds_the_expected_members(release: Release) -> None:
    with tarfile.open(release.tarball) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
        top = f"vigatra-{release.version}-{TARGET}"
        assert all(n.startswith(f"{top}/") for n in names)
        relative = {n.removeprefix(f"{top}/") for n in names}
        assert relative >= FILES, f"missing: {sorted(FILES - relative)}"
        assert [n for n in relative if re.fullmatch(r"dist/vigatra-[^/]+-py3-none-any\.whl", n)]
        assert tar.getmember(f"{top}/install.sh").mode & 0o111


def test_bundle_info_names_platform_glibc_and_schema(bundle: Path) -> None:
    info = dict(line.split("=", 1) for line in (bundle / "BUNDLE-INFO").read_text().splitlines())
    assert info["target"] == TARGET and info["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert info["arch"] == platform.machine()
    assert re.fullmatch(r"2\.\d+", info["glibc"])
    from appliance.store.migrate import head_revision

    assert info["schema_head"] == head_revision()
    assert head_revision() in info["schema_revisions"].split()


def test_every_locked_package_has_its_wheel(bundle: Path) -> None:
    wheels = {canonicalize_name(parse_wheel_filename(p.name)[0]): str(parse_wheel_filename(p.name)[1])
              for p in (bundle / "offline-wheels").glob("*.whl")}
    assert wheels == {name: version for name, (version, _hashes) in ENTRIES.items()}


def test_sha256sums_cover_every_file_and_are_signed(bundle: Path, release: Release) -> None:
    result = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=bundle, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = {line.split("  ", 1)[1] for line in (bundle / "SHA256SUMS").read_text().splitlines()}
    present = {str(p.relative_to(bundle)) for p in bundle.rglob("*")
               if p.is_file() and not p.name.startswith("SHA256SUMS")}
    assert listed == present
    ours = subprocess.run([sys.executable, str(RELEASE_SIGN), "verify", "--public-key", str(release.public_key),
                           str(bundle / "SHA256SUMS")], capture_output=True, text=True, check=False)
    assert ours.returncode == 0, ours.stderr


def test_sbom_lists_every_wheel_with_its_hash_and_validates(bundle: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = (bundle / "sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    sbom = json.loads(text)
    assert sbom["bomFormat"] == "CycloneDX"
    (app_wheel,) = (bundle / "dist").glob("vigatra-*.whl")
    assert sbom["metadata"]["component"]["name"] == "vigatra"
    by_file = {next(p["value"] for p in c["properties"] if p["name"] == "vigatra:wheel"): c
               for c in sbom["components"]}
    wheels = sorted((bundle / "offline-wheels").glob("*.whl"))
    assert set(by_file) == {w.name for w in wheels}
    for wheel in wheels:
        component = by_file[wheel.name]
        assert component["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(wheel.read_bytes()).hexdigest()}]
        # purl-spec's PyPI rule: lower case, "_" becomes "-"
        assert component["purl"].startswith(f"pkg:pypi/{component['name'].lower().replace('_', '-')}@")
    assert app_wheel.name.startswith("vigatra-")
