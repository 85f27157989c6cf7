"""install.sh for real, as root, on a scratch host without network (tests/packaging/hostns.py): first
install from a signed release, an upgrade with a migration (backup first, releases side by side), an
older bundle refused, --rollback to the previous release and its pre-upgrade backup, --uninstall
keeping the data, --purge; and everything refused before anything is unpacked or created.

The service is started by the systemd stand-ins as its User= with its encrypted credential, and
answers /healthz on the namespace's loopback; the checks below read the scratch host's files.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging import hostns
from tests.packaging.releases import PROBE_REVISION, RELEASE_SIGN, Release, release_a, release_b

pytestmark = pytest.mark.slow  # two venvs built and installed from wheels

HEALTHZ = ("python3 -c \"import json, time, urllib.request\nfor _ in range(60):\n    try:\n"
           "        print(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).read().decode()); break\n"
           "    except OSError: time.sleep(0.5)\"")
AS_SERVICE = ("systemd-run --quiet --wait --pipe --collect --uid=vigatra --gid=vigatra "
              "-p LoadCredentialEncrypted=vigatra-kek:/etc/vigatra/credentials/vigatra-kek.cred "
              "/opt/vigatra/current/bin/vigatra --config /etc/vigatra/vigatra.yaml")


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Release, Release]:
    hostns.require()
    return release_a(tmp_path_factory), release_b(tmp_path_factory)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[hostns.Host]:
    hostns.require()
    scratch = hostns.Host(tmp_path / "host").start()
    try:
        yield scratch
    finally:
        scratch.stop()


def ok(result: object) -> str:
    assert getattr(result, "returncode", 1) == 0, f"{result.stdout}\n{result.stderr}"  # type: ignore[attr-defined]
    return str(result.stdout)  # type: ignore[attr-defined]


def usernames(host: hostns.Host) -> set[str]:
    with sqlite3.connect(host.path("/var/lib/vigatra/vigatra.db")) as conn:
        return {row[0] for row in conn.execute("SELECT username FROM users")}


def revision(host: hostns.Host) -> str:
    with sqlite3.connect(host.path("/var/lib/vigatra/vigatra.db")) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def state(host: hostns.Host) -> dict[str, str]:
    lines = host.path("/opt/vigatra/install-state").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _calls(host: hostns.Host) -> int:
    log = host.root / "standin" / "calls.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def _downtime(host: hostns.Host, since_line: int) -> float:
    """Seconds from `systemctl stop` to the `systemctl restart` that started the new release (the
    stand-ins stamp every call); shown by `pytest -s`, never asserted (timings belong in bench/)."""
    lines = (host.root / "standin" / "calls.log").read_text().splitlines()[since_line:]
    stamps = {}
    for line in lines:
        stamp, _name, *words = line.split()
        if words[:1] == ["stop"] and "stop" not in stamps:
            stamps["stop"] = float(stamp)
        if words[:1] == ["restart"]:
            stamps["start"] = float(stamp)
    return stamps.get("start", 0.0) - stamps.get("stop", 0.0)


def test_install_upgrade_refuse_older_rollback_uninstall(host: hostns.Host, releases: tuple[Release, Release]
                                                         ) -> None:
    a, b = releases
    # -- first install, from the release directory, pinning the release key --------------------------
    out = ok(host.run(f"sh {a.directory}/install.sh --trust-key {a.public_key} "
                      "--public-url https://vigatra.example.internal"))
    assert "signature of SHA256SUMS verified" in out and "admin password: " in out
    assert host.path("/opt/vigatra/current").readlink() == Path(f"releases/{a.version}")
    assert host.path("/etc/vigatra/release-key.pub").read_text() == a.public_key.read_text()
    assert '"status":"ok"' in ok(host.run(HEALTHZ))
    # doctor as root reads the credential the way the unit does (a transient unit as vigatra)
    doctor = host.run("/opt/vigatra/current/bin/vigatra --config /etc/vigatra/vigatra.yaml doctor --skip-network")
    assert re.search(r"^KEK +ok ", doctor.stdout, re.M), doctor
    assert "LoadCredentialEncrypted=vigatra-kek" in doctor.stderr, doctor
    ok(host.run(f"{AS_SERVICE} user create --username before-upgrade --role Viewer --password-stdin",
                input="a long enough passphrase for the test\n"))
    # -- upgrade: signed by the pinned key, backup first, migration, switch --------------------------
    mark = _calls(host)
    out = ok(host.run(f"sh {b.directory}/install.sh"))
    print(f"upgrade downtime (stop to the new release started): {_downtime(host, mark):.1f} s")
    assert "encrypted backup before the upgrade" in out and f"Upgraded to {b.version}" in out
    assert host.path("/opt/vigatra/current").readlink() == Path(f"releases/{b.version}")
    assert host.path(f"/opt/vigatra/releases/{a.version}/bin/vigatra").exists()  # side by side
    assert revision(host) == PROBE_REVISION
    recorded = state(host)
    assert recorded["previous"] == f"releases/{a.version}" and recorded["previous_revision"] != PROBE_REVISION
    backup = Path(recorded["upgrade_backup"])
    manifest = json.loads(host.path(str(backup / "manifest.json")).read_text())
    assert manifest["origin"] == "upgrade" and manifest["database"]["schema_revision"] == recorded["previous_revision"]
    assert oct(host.path(str(backup / "database.enc")).stat().st_mode & 0o777) == "0o600"
    assert '"status":"ok"' in ok(host.run(HEALTHZ))
    ok(host.run(f"{AS_SERVICE} user create --username after-upgrade --role Viewer --password-stdin",
                input="another long enough passphrase here\n"))
    # -- an older bundle over the newer database: one clear line, nothing changed --------------------
    older = host.run(f"sh {a.directory}/install.sh")
    assert older.returncode == 1
    refusal = [line for line in older.stderr.splitlines() if line.startswith("install.sh:")]
    assert len(refusal) == 1 and f"older than the installed {b.version}" in refusal[0] and "--rollback" in refusal[0]
    assert host.path("/opt/vigatra/current").readlink() == Path(f"releases/{b.version}")
    # -- rollback: the schema moved, so the pre-upgrade backup comes back ----------------------------
    out = ok(host.run(f"sh {b.directory}/install.sh --rollback"))
    assert "restoring the pre-upgrade backup" in out
    assert host.path("/opt/vigatra/current").readlink() == Path(f"releases/{a.version}")
    assert revision(host) == recorded["previous_revision"]
    names = usernames(host)
    assert "before-upgrade" in names and "after-upgrade" not in names
    assert '"status":"ok"' in ok(host.run(HEALTHZ))
    verify = ok(host.run(f"{AS_SERVICE} audit verify"))
    assert "audit trail valid" in verify
    # what happened after the upgrade was backed up before it was replaced
    kept = [p for p in host.path("/var/backups/vigatra/").iterdir() if p.name.startswith("vigatra-backup-")]
    assert len(kept) == 2
    # -- uninstall keeps data, keys and backups, and says so -----------------------------------------
    out = ok(host.run(f"sh {b.directory}/install.sh --uninstall"))
    for listed in ("/etc/vigatra/vigatra.yaml", "/etc/vigatra/credentials", "/var/lib/vigatra", "/var/backups/vigatra",
                   "the system user vigatra"):
        assert listed in out
    assert not host.path("/opt/vigatra/current").exists()
    assert not host.path("/etc/systemd/system/vigatra.service").exists()
    assert host.path("/var/lib/vigatra/vigatra.db").exists()
    assert host.run("systemctl is-active vigatra.service").returncode == 3
    refused = host.run(f"sh {b.directory}/install.sh --uninstall --purge")
    assert refused.returncode == 1 and "add --yes" in refused.stderr
    ok(host.run(f"sh {b.directory}/install.sh --uninstall --purge --yes"))
    assert not host.path("/var/lib/vigatra").exists() and not host.path("/etc/vigatra").exists()
    assert "vigatra:" not in host.path("/etc/passwd").read_text()


# -- refusals before anything is unpacked or created -----------------------------------------------------


def nothing_installed(host: hostns.Host) -> None:
    assert not host.path("/opt/vigatra").exists()
    assert not host.path("/etc/vigatra").exists()
    assert not host.path("/var/lib/vigatra").exists()
    assert "vigatra:" not in host.path("/etc/passwd").read_text()


def copy_release(release: Release, into: Path) -> Path:
    import shutil

    shutil.copytree(release.directory, into)
    return into


def test_a_changed_byte_in_the_bundle_is_refused_before_unpacking(host: hostns.Host, releases: tuple[Release, Release],
                                                                  tmp_path: Path) -> None:
    a, _b = releases
    changed = copy_release(a, tmp_path / "changed")
    tarball = changed / a.tarball.name
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0x01
    tarball.write_bytes(bytes(data))
    result = host.run(f"sh {changed}/install.sh --trust-key {a.public_key}")
    assert result.returncode == 1
    assert f"{a.tarball.name} does not match the signed SHA256SUMS" in result.stderr
    assert "nothing was unpacked" in result.stderr
    nothing_installed(host)


def test_a_changed_byte_in_the_signed_sums_fails_the_signature(host: hostns.Host, releases: tuple[Release, Release],
                                                               tmp_path: Path) -> None:
    a, _b = releases
    changed = copy_release(a, tmp_path / "changed")
    sums = changed / "SHA256SUMS"
    text = sums.read_text()
    sums.write_text(text[:10] + ("0" if text[10] != "0" else "1") + text[11:])
    result = host.run(f"sh {changed}/install.sh --trust-key {a.public_key}")
    assert result.returncode == 1 and "does not verify with the trusted key" in result.stderr
    nothing_installed(host)


def test_another_key_and_no_key_are_refused(host: hostns.Host, releases: tuple[Release, Release],
                                            tmp_path: Path) -> None:
    import subprocess
    import sys

    a, _b = releases
    subprocess.run([sys.executable, str(RELEASE_SIGN), "keygen", "--secret-key", str(tmp_path / "other.key"),
                    "--public-key", str(tmp_path / "other.pub")], check=True, capture_output=True)
    wrong = host.run(f"sh {a.directory}/install.sh --trust-key {tmp_path / 'other.pub'}")
    assert wrong.returncode == 1 and "not by the trusted key" in wrong.stderr
    none = host.run(f"sh {a.directory}/install.sh")
    assert none.returncode == 1 and "pass --trust-key FILE" in none.stderr
    nothing_installed(host)


def test_an_unpacked_bundle_checks_its_own_signed_sums(host: hostns.Host, releases: tuple[Release, Release],
                                                       tmp_path: Path) -> None:
    a, _b = releases
    bundle = a.unpacked(tmp_path / "unpacked")
    with (bundle / "systemd" / "vigatra.service").open("a") as unit:
        unit.write("NoNewPrivileges=no\n")
    result = host.run(f"sh {bundle}/install.sh --trust-key {a.public_key} --dry-run")
    assert result.returncode == 1 and "do not match SHA256SUMS" in result.stderr
    nothing_installed(host)


def test_no_bundle_for_this_python_names_the_one_to_fetch(host: hostns.Host, releases: tuple[Release, Release],
                                                           tmp_path: Path) -> None:
    import subprocess
    import sys

    a, _b = releases
    other = copy_release(a, tmp_path / "other-platform")
    target = a.tarball.name.removeprefix(f"vigatra-{a.version}-").removesuffix(".tar.gz")
    (other / a.tarball.name).rename(other / a.tarball.name.replace(target, "cp313-aarch64"))
    lines = [line.replace(target, "cp313-aarch64") for line in (other / "SHA256SUMS").read_text().splitlines()]
    (other / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    subprocess.run([sys.executable, str(RELEASE_SIGN), "sign", "--secret-key", str(a.secret_key),
                    str(other / "SHA256SUMS")], check=True)
    result = host.run(f"sh {other}/install.sh --trust-key {a.public_key}")
    assert result.returncode == 1
    assert "no bundle for this host" in result.stderr and f"vigatra-<version>-{target}.tar.gz" in result.stderr
    assert "cp313-aarch64" in result.stderr
    nothing_installed(host)


def test_without_systemd_as_init_nothing_is_created_and_the_dry_run_says_so(
        tmp_path: Path, releases: tuple[Release, Release]) -> None:
    a, _b = releases
    container = hostns.Host(tmp_path / "container", systemd=False).start()
    try:
        for args in ("", "--dry-run"):
            result = container.run(f"sh {a.directory}/install.sh --trust-key {a.public_key} {args}")
            assert result.returncode == 1, result.stdout
            assert "systemd is not running as init" in result.stderr
        nothing_installed(container)
    finally:
        container.stop()


def test_a_failed_first_install_removes_what_it_created(host: hostns.Host, releases: tuple[Release, Release],
                                                         tmp_path: Path) -> None:
    """A wheel the lock pins is missing: pip fails after the user, directories and venv were made; they go again."""
    import hashlib
    import subprocess
    import sys

    a, _b = releases
    bundle = a.unpacked(tmp_path / "broken")
    sorted(bundle.glob("offline-wheels/*.whl"))[0].unlink()
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(bundle)}\n"
             for p in sorted(bundle.rglob("*")) if p.is_file() and not p.name.startswith("SHA256SUMS")]
    (bundle / "SHA256SUMS").write_text("".join(lines))
    subprocess.run([sys.executable, str(RELEASE_SIGN), "sign", "--secret-key", str(a.secret_key),
                    str(bundle / "SHA256SUMS")], check=True)
    result = host.run(f"sh {bundle}/install.sh --trust-key {a.public_key} --key-provider file")
    assert result.returncode == 1
    assert "removing what it created" in result.stderr
    nothing_installed(host)
