"""install.sh and build-bundle.sh: shell syntax, shellcheck, options, and install.sh's dry run on a
fake signed bundle in a scratch host (tests/packaging/hostns.py): every check runs, every action is
printed, nothing changes."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging import hostns
from tests.packaging.releases import RELEASE_SIGN, shared_dir, signing_keys
from tests.packaging.tools import BUILD_BUNDLE_SH, INSTALL_SH, LOCK, REPO, require_tool

SCRIPTS = [INSTALL_SH, BUILD_BUNDLE_SH]
PYVER = f"{sys.version_info[0]}.{sys.version_info[1]}"
# What a freshly generated KEK looks like: base64 of 32 bytes. It must never be printed.
KEK_TEXT = re.compile(r"\b[A-Za-z0-9+/]{43}=")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_posix_sh_syntax(script: Path) -> None:
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    shellcheck = require_tool("shellcheck", "shellcheck")
    result = subprocess.run([shellcheck, "--shell=sh", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def install(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["sh", str(bundle / "install.sh"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd="/")


def test_help_lists_every_option() -> None:
    result = install(REPO, "--help")
    assert result.returncode == 0
    for option in ("--trust-key", "--rollback", "--uninstall", "--purge", "--yes", "--prefix", "--python",
                   "--backup-dir", "--db-url", "--public-url", "--admin-username", "--key-provider",
                   "--key-file", "--pkcs11-module", "--pkcs11-token", "--pkcs11-key-label", "--pkcs11-pin-file",
                   "--pkcs11-pin-stdin", "--no-start", "--dry-run", "--help"):
        assert option in result.stdout


@pytest.mark.parametrize("args", [["--bogus"], ["--key-provider", "env"], ["--prefix", "relative/path"],
                                  ["--prefix"], ["--key-file", "/var/lib/vigatra/kek.key"], ["--purge"],
                                  ["--db-url", "postgresql+psycopg://vigatra:s3cret@db/vigatra"]])
def test_bad_usage_exits_2(args: list[str]) -> None:
    result = install(REPO, *args)
    assert result.returncode == 2, result.stderr
    assert "install.sh:" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout  # a refused password is not echoed back


def test_refuses_to_run_as_non_root() -> None:
    # The script must be readable by the unprivileged user: copy it where anyone can read it.
    directory = Path(tempfile.mkdtemp(prefix="vigatra-install-"))
    try:
        directory.chmod(0o755)
        shutil.copy(INSTALL_SH, directory / "install.sh")
        command = ["sh", str(directory / "install.sh")]
        if os.geteuid() == 0:
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, cwd="/")
    finally:
        shutil.rmtree(directory)
    assert result.returncode == 1
    assert "must run as root" in result.stderr
    assert result.stdout == ""


def make_bundle(directory: Path, keys: tuple[Path, Path]) -> Path:
    """The layout build-bundle.sh makes, with a placeholder appliance wheel and no dependency wheels,
    its SHA256SUMS signed with ``keys`` (secret, public)."""
    bundle = directory / "bundle"
    (bundle / "dist").mkdir(parents=True)
    (bundle / "offline-wheels").mkdir()
    (bundle / "config").mkdir()
    (bundle / "packaging").mkdir()
    shutil.copy(INSTALL_SH, bundle / "install.sh")
    shutil.copytree(REPO / "systemd", bundle / "systemd")
    shutil.copytree(REPO / "packaging" / "nginx", bundle / "packaging" / "nginx")
    shutil.copytree(REPO / "packaging" / "caddy", bundle / "packaging" / "caddy")
    shutil.copy(LOCK, bundle / "offline-wheels" / "requirements.lock")
    (bundle / "config" / "vigatra.example.yaml").write_text("# example\n")
    (bundle / "README.md").write_text("# Vigatra\n")
    (bundle / "dist" / "vigatra-0.1.0-py3-none-any.whl").write_bytes(b"placeholder")
    (bundle / "BUNDLE-INFO").write_text(f"name=vigatra\nversion=0.1.0\npython={PYVER}\n")
    write_sums(bundle, keys[0])
    return bundle


def write_sums(bundle: Path, secret: Path) -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(bundle)}\n"
             for p in sorted(bundle.rglob("*")) if p.is_file() and not p.name.startswith("SHA256SUMS")]
    (bundle / "SHA256SUMS").write_text("".join(lines))
    subprocess.run([sys.executable, str(RELEASE_SIGN), "sign", "--secret-key", str(secret), str(bundle / "SHA256SUMS")],
                   check=True)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return signing_keys(shared_dir(tmp_path_factory))


@pytest.fixture
def host(tmp_path: Path) -> Iterator[hostns.Host]:
    hostns.require()
    scratch = hostns.Host(tmp_path / "host").start()
    try:
        yield scratch
    finally:
        scratch.stop()


@pytest.fixture
def bundle(tmp_path: Path, keys: tuple[Path, Path]) -> Path:
    return make_bundle(tmp_path, keys)


def dry_run(host: hostns.Host, bundle: Path, keys: tuple[Path, Path], *args: str) -> subprocess.CompletedProcess[str]:
    prefix = bundle.parent / "prefix"
    words = " ".join(shlex.quote(a) for a in ("--trust-key", str(keys[1]), "--dry-run", "--prefix", str(prefix),
                                               "--python", sys.executable, *args))
    return host.run(f"sh {bundle}/install.sh {words}")


def in_order(text: str, *needles: str) -> None:
    position = -1
    for needle in needles:
        found = text.find(needle, position + 1)
        assert found > position, f"{needle!r} missing or out of order in:\n{text}"
        position = found


PROVIDERS = {
    "systemd": ([], ["systemd-creds encrypt --name=vigatra-kek - /etc/vigatra/credentials/vigatra-kek.cred",
                     "systemd-run", "LoadCredentialEncrypted=vigatra-kek:/etc/vigatra/credentials/vigatra-kek.cred",
                     "init --data-dir /var/lib/vigatra", "--key-provider systemd --yes"]),
    "file": (["--key-provider", "file"], ["> /etc/vigatra/kek.key (mode 0400, owner vigatra)",
                                          "runuser -u vigatra", "init --data-dir /var/lib/vigatra",
                                          "--key-provider file --yes", "--key-file /etc/vigatra/kek.key",
                                          "key-provider-file.conf", "vigatra.service.d/10-key-provider.conf"]),
    "pkcs11": (["--key-provider", "pkcs11", "--pkcs11-module", "/usr/lib/softhsm/libsofthsm2.so",
                "--pkcs11-pin-stdin"],
               ["systemd-creds encrypt --name=vigatra-pkcs11-pin - /etc/vigatra/credentials/vigatra-pkcs11-pin.cred",
                "systemd-run", "LoadCredentialEncrypted=vigatra-pkcs11-pin:", "init --data-dir /var/lib/vigatra",
                "--pkcs11-module /usr/lib/softhsm/libsofthsm2.so", "key-provider-pkcs11.conf",
                "vigatra.service.d/11-pkcs11-pin.conf"]),
}


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_dry_run_prints_a_first_install_and_changes_nothing(host: hostns.Host, bundle: Path, keys: tuple[Path, Path],
                                                            provider: str) -> None:
    args, expected = PROVIDERS[provider]
    result = dry_run(host, bundle, keys, "--db-url", "postgresql+psycopg:///vigatra?host=/run/postgresql",
                     "--public-url", "https://vigatra.example.com", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    prefix = bundle.parent / "prefix"
    release = f"{prefix}/releases/0.1.0"
    assert "dry run" in out and "signature of SHA256SUMS verified" in out
    in_order(out, "vigatra", "install -d -m 0750 -o root -g vigatra /etc/vigatra",
             "install -d -m 0700 -o root -g root /etc/vigatra/credentials",
             "install -d -m 0700 -o vigatra -g vigatra /var/lib/vigatra",
             "install -d -m 0700 -o vigatra -g vigatra /var/backups/vigatra",
             "/etc/vigatra/release-key.pub", f"-m venv {release}",
             "PIP_CONFIG_FILE=/dev/null", f"--no-index --find-links {bundle}/offline-wheels",
             f"--require-hashes -r {bundle}/offline-wheels/requirements.lock",
             f"--no-index --no-deps {bundle}/dist/vigatra-0.1.0-py3-none-any.whl", "pip --quiet check",
             *expected[:1], "init --data-dir /var/lib/vigatra",
             "/var/lib/vigatra/vigatra.yaml /etc/vigatra/vigatra.yaml",
             f"sed 's#/opt/vigatra#{prefix}#g'", f"ln -sfn releases/0.1.0 {prefix}/current.new",
             "systemctl daemon-reload", "systemctl enable vigatra.service",
             "systemctl restart vigatra.service", "Next steps")
    for needle in expected:
        assert needle in out, f"{needle!r} missing from:\n{out}"
    assert "--database-url postgresql+psycopg:///vigatra?host=/run/postgresql" in out
    assert "--public-url https://vigatra.example.com" in out
    assert not KEK_TEXT.search(out), "a key-like string was printed"
    assert not prefix.exists()
    assert not host.path("/etc/vigatra").exists()
    assert "vigatra:" not in host.path("/etc/passwd").read_text()


def test_no_start_enables_without_starting(host: hostns.Host, bundle: Path, keys: tuple[Path, Path]) -> None:
    result = dry_run(host, bundle, keys, "--no-start")
    assert result.returncode == 0, result.stderr
    assert "+ systemctl enable vigatra.service" in result.stdout
    assert "+ systemctl restart" not in result.stdout


def test_dry_run_refuses_a_tampered_bundle(host: hostns.Host, bundle: Path, keys: tuple[Path, Path]) -> None:
    with (bundle / "systemd" / "vigatra.service").open("a") as unit:
        unit.write("NoNewPrivileges=no\n")
    result = dry_run(host, bundle, keys)
    assert result.returncode == 1
    assert "do not match SHA256SUMS" in result.stderr


def test_dry_run_refuses_re_signed_sums_under_another_key(host: hostns.Host, bundle: Path, keys: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    other_secret, other_public = tmp_path / "other.key", tmp_path / "other.pub"
    subprocess.run([sys.executable, str(RELEASE_SIGN), "keygen", "--secret-key", str(other_secret), "--public-key",
                    str(other_public)], check=True, capture_output=True)
    with (bundle / "systemd" / "vigatra.service").open("a") as unit:
        unit.write("NoNewPrivileges=no\n")
    write_sums(bundle, other_secret)  # an attacker can recompute the sums, not sign them with the release key
    result = dry_run(host, bundle, keys)
    assert result.returncode == 1
    assert "not by the trusted key" in result.stderr


def test_dry_run_refuses_a_bundle_for_another_python(host: hostns.Host, bundle: Path, keys: tuple[Path, Path]) -> None:
    (bundle / "BUNDLE-INFO").write_text("name=vigatra\nversion=0.1.0\npython=3.99\n")
    write_sums(bundle, keys[0])
    result = dry_run(host, bundle, keys)
    assert result.returncode == 1
    assert "built for Python 3.99" in result.stderr


def test_dry_run_refuses_a_host_glibc_older_than_the_bundle_needs(host: hostns.Host, bundle: Path,
                                                                   keys: tuple[Path, Path]) -> None:
    (bundle / "BUNDLE-INFO").write_text(f"name=vigatra\nversion=0.1.0\npython={PYVER}\nglibc=2.999\n")
    write_sums(bundle, keys[0])
    result = dry_run(host, bundle, keys)
    assert result.returncode == 1
    assert "needs glibc >= 2.999" in result.stderr


def test_never_clears_a_directory_that_is_not_its_install(host: hostns.Host, bundle: Path,
                                                           keys: tuple[Path, Path]) -> None:
    # A mistyped --prefix (/opt, /usr/local) must not be taken over.
    precious = bundle.parent / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    words = f"--trust-key {keys[1]} --dry-run --prefix {precious} --python {sys.executable}"
    result = host.run(f"sh {bundle}/install.sh {words}")
    assert result.returncode == 1
    assert "refusing to clear it" in result.stderr
    assert (precious / "data.txt").read_text() == "keep me"


def test_pkcs11_needs_a_pin(bundle: Path) -> None:
    result = install(bundle, "--key-provider", "pkcs11", "--pkcs11-pin-file", "/etc/vigatra/pin",
                     "--pkcs11-pin-stdin", "--dry-run")
    assert result.returncode == 2
    assert "not both" in result.stderr


def test_rollback_with_nothing_to_roll_back_to(host: hostns.Host) -> None:
    result = host.run(f"sh {INSTALL_SH} --rollback")
    assert result.returncode == 1
    assert "nothing to roll back to" in result.stderr
