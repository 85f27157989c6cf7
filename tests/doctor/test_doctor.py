"""`vigatra doctor`: each mistake customer IT made (issue 25) is caught with a plain sentence and its fix.

Real files, real ownership and modes, a real database on both backends, the venue simulators over
loopback (through the egress layer) and a real TLS listener; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from appliance.cli.main import cli
from appliance.services import doctor as checks
from appliance.settings import VENUE_IDS, Settings, load_settings
from appliance.venues.egress import Egress
from appliance.venues.probe import PROBES, probe
from tests.keys.conftest import Box, write_kek
from tests.support.proc import free_port
from tests.support.sim import RunningSim
from tests.support.tls import make_certificate

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def configure(box: Box, **sections: Any) -> None:
    """Merge ``sections`` into the box's configuration, two levels deep (JSON is YAML)."""
    for name, value in sections.items():
        if isinstance(value, dict):
            section = box.raw.setdefault(name, {})
            for key, sub in value.items():
                if isinstance(sub, dict) and isinstance(section.get(key), dict):
                    section[key].update(sub)
                else:
                    section[key] = sub
        else:
            box.raw[name] = value
    box.config.write_text(json.dumps(box.raw))


def quiet_box(box: Box, **sections: Any) -> None:
    """A configuration that passes every offline check: public_url set, venues off, a backup place."""
    backups = box.config.parent / "backups"
    backups.mkdir(mode=0o700, exist_ok=True)
    configure(box, server={"public_url": "https://vigatra.example.internal"},
              venues={v: {"enabled": False} for v in VENUE_IDS}, backup={"dest": str(backups)})
    configure(box, **sections)
    box.data_dir.mkdir(mode=0o700, exist_ok=True)


def doctor(box: Box, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--config", str(box.config), "doctor", *args], env=env, catch_exceptions=False)


def rows(result: Result) -> dict[str, tuple[str, str]]:
    """check name -> (status, detail) from doctor's table (the last row of a name wins)."""
    out: dict[str, tuple[str, str]] = {}
    for line in result.output.splitlines():
        for status in ("PROBLEM", "warning", "ok"):
            marker = f"  {status}  "
            if marker in line:
                name, detail = line.split(marker, 1)
                out[name.strip()] = (status, detail.strip())
                break
    return out


def test_a_healthy_offline_configuration_passes(box: Box) -> None:
    quiet_box(box)
    result = doctor(box, "--skip-network")
    assert result.exit_code == 0, result.output
    found = rows(result)
    assert found["KEK"][0] == "ok" and "opens all 1 live data key" in found["KEK"][1]
    assert found["database"][0] == "ok"


def test_wrong_kek_exits_1_and_names_it(box: Box) -> None:
    quiet_box(box)
    write_kek(box.kek_file)  # a valid KEK, but not the one the data keys were wrapped under
    result = doctor(box, "--skip-network")
    assert result.exit_code == 1, result.output
    status, detail = rows(result)["KEK"]
    assert status == "PROBLEM"
    assert "wrong KEK" in detail and "will refuse to start" in detail
    assert "wrong KEK" in result.output.splitlines()[-1]  # the one-line summary names it too


@sqlite_only
def test_mistyped_sqlite_path_is_named_and_not_created(box: Box, tmp_path: Path) -> None:
    quiet_box(box)
    typo = tmp_path / "data" / "vigatar.db"
    configure(box, database={"url": f"sqlite:///{typo}"})
    result = doctor(box, "--skip-network")
    assert result.exit_code == 1
    status, detail = rows(result)["database"]
    assert status == "PROBLEM" and "does not exist" in detail and "mistyped" in detail
    assert "db upgrade" not in result.output
    assert not typo.exists()


@sqlite_only
def test_root_owned_data_dir_is_named_with_the_fix(box: Box) -> None:
    quiet_box(box)
    settings = load_settings(box.config, env={})
    os.chown(box.data_dir, 0, 0)
    nobody = 65534
    found = checks.check_data_dir(settings, nobody)
    assert found[0].status == checks.PROBLEM
    assert "is owned by root" in found[0].message and "chown -R nobody:nobody" in found[0].message
    assert "unable to open database file" not in found[0].message


@sqlite_only
def test_database_file_the_service_cannot_open_is_explained(box: Box) -> None:
    """What the service meets when root made the database (or its directory): words and a chown, not
    SQLite's "unable to open database file". Run as an unprivileged user, through a subprocess."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make files another user cannot open")
    settings = load_settings(box.config, env={})
    source = checks.sqlite_file(settings)
    assert source is not None
    place = Path(tempfile.mkdtemp(prefix="vigatra-doctor-"))
    try:
        place.chmod(0o755)
        data = place / "data"
        data.mkdir(mode=0o755)
        db_file = data / "vigatra.db"
        shutil.copyfile(source, db_file)
        db_file.chmod(0o600)  # root's, as `vigatra init` run as root leaves it
        code = ("import sys; from pathlib import Path; from appliance.services.doctor import _sqlite_file_problem;"
                "print(_sqlite_file_problem(Path(sys.argv[1])))")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code,
                   str(db_file)]
        repo = Path(__file__).resolve().parents[2]
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=repo, timeout=60)
        assert "is owned by root" in result.stdout and "cannot open it for writing" in result.stdout, result.stderr
        data.chmod(0o700)  # a root-owned 0700 data dir: the service cannot even look inside
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=repo, timeout=60)
        assert f"the directory {data} is owned by root with mode 0700" in result.stdout, result.stderr
        assert "chown -R nobody:nobody" in result.stdout
    finally:
        shutil.rmtree(place)


def test_public_url_missing_or_plain_http_and_network_bind(box: Box) -> None:
    quiet_box(box)
    configure(box, server={"public_url": ""})
    result = doctor(box, "--skip-network")
    assert result.exit_code == 1
    status, detail = rows(result)["public_url"]
    assert status == "PROBLEM" and "server.public_url is not set" in detail
    configure(box, server={"public_url": "https://vigatra.example.internal", "host": "0.0.0.0"})
    result = doctor(box, "--skip-network")
    assert result.exit_code == 1
    status, detail = rows(result)["listen address"]
    assert status == "PROBLEM" and "plain HTTP" in detail and "127.0.0.1" in detail


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS listener on 127.0.0.1 with a certificate for localhost; (port, certificate path)."""
    cert = make_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_path, cert.key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, cert.cert_path
    finally:
        stop.set()
        thread.join()
        listener.close()


@sqlite_only
def test_tls_front_checked_at_public_url(box: Box, tls_server: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    port, cert_path = tls_server
    quiet_box(box, server={"public_url": f"https://localhost:{port}"})
    settings = load_settings(box.config, env={})
    untrusted = checks.check_tls_front(settings)
    assert untrusted[0].status == checks.WARNING and "not trusted" in untrusted[0].message
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # this host now trusts the front's certificate
    trusted = checks.check_tls_front(settings)
    assert trusted[0].status == checks.OK, trusted
    closed = free_port()
    configure(box, server={"public_url": f"https://localhost:{closed}"})
    nothing = checks.check_tls_front(load_settings(box.config, env={}))
    assert nothing[0].status == checks.PROBLEM and "nothing answers" in nothing[0].message


def test_every_venue_probe_is_answered_by_its_simulator(sim: RunningSim, tmp_path: Path) -> None:
    """One public request per venue through the egress layer (allowlist, base_url rewrite), each with a time."""
    from appliance.settings import settings_from_mapping

    settings = settings_from_mapping({"data_dir": str(tmp_path), "venues": {
        v: {"base_url": sim.base_url(v)} for v in VENUE_IDS}}, env={})
    egress = Egress(settings)
    assert set(PROBES) == set(VENUE_IDS)
    for venue in VENUE_IDS:
        result = probe(egress, venue)
        assert result.ok, (venue, result)
        assert result.skew_seconds is not None and abs(result.skew_seconds) < 3, (venue, result)
        assert result.time_source == ("its Date header" if PROBES[venue].time_of is None else "its time endpoint")


@sqlite_only
def test_clock_skew_against_the_venues_server_time(box: Box, sim: RunningSim) -> None:
    quiet_box(box, venues={"kraken": {"enabled": True, "base_url": sim.base_url("kraken")},
                           "gemini": {"enabled": True, "base_url": sim.base_url("gemini")}})
    try:
        sim.control("POST", "kraken/faults", {"clock_offset_seconds": 30})
        result = doctor(box)
    finally:
        sim.clear_faults()
    found = rows(result)
    assert found["egress kraken"][0] == "ok" and found["egress gemini"][0] == "ok"
    status, detail = found["clock"]
    assert status == "PROBLEM" and "behind kraken" in detail and "NTP" in detail
    again = rows(doctor(box))
    assert again["clock"][0] == "ok", again["clock"]


@sqlite_only
def test_egress_names_each_unreachable_venue(box: Box, sim: RunningSim) -> None:
    closed = free_port()
    quiet_box(box, venues={"okx": {"enabled": True, "base_url": sim.base_url("okx")},
                           "bybit": {"enabled": True, "base_url": f"http://127.0.0.1:{closed}"}})
    result = doctor(box)
    assert result.exit_code == 1
    found = rows(result)
    assert found["egress okx"][0] == "ok"
    status, detail = found["egress bybit"]
    assert status == "PROBLEM" and "connection failed" in detail and "venues.bybit.enabled: false" in detail
    log = sim.requests_log("okx")
    assert any(entry["path"] == "/api/v5/public/time" for entry in log)


@sqlite_only
def test_systemd_credential_outside_the_unit_is_explained(box: Box) -> None:
    quiet_box(box, keys={"provider": "systemd", "systemd_credential": "vigatra-kek"})
    env = {"CREDENTIALS_DIRECTORY": ""}
    result = doctor(box, "--skip-network", env=env)
    assert result.exit_code == 1
    status, detail = rows(result)["key provider"]
    assert status == "PROBLEM" and "$CREDENTIALS_DIRECTORY is not set" in detail
    assert "sudo vigatra doctor" in detail


@sqlite_only
def test_systemd_credential_read_as_the_unit_does(box: Box, tmp_path: Path) -> None:
    """Inside the unit, $CREDENTIALS_DIRECTORY holds the decrypted credential: doctor reads it from there."""
    quiet_box(box, keys={"provider": "systemd", "systemd_credential": "vigatra-kek"})
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    os.chmod(box.kek_file, 0o600)
    (creds / "vigatra-kek").write_bytes(box.kek_file.read_bytes())
    result = doctor(box, "--skip-network", env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert result.exit_code == 0, result.output
    assert rows(result)["KEK"][0] == "ok"


def test_file_ownership_and_modes(box: Box) -> None:
    quiet_box(box)
    loose = box.data_dir / "notes.txt"
    loose.write_text("x")
    os.chmod(loose, 0o644)
    os.chmod(box.config, 0o666)  # noqa: S103 - the mistake under test
    result = doctor(box, "--skip-network")
    assert result.exit_code == 1
    text = result.output
    assert f"{loose} has mode 0644" in text and "chmod go-rwx" in text
    assert "others may change the configuration" in text


def test_scheduled_backup_destination_must_exist(box: Box, tmp_path: Path) -> None:
    quiet_box(box, backup={"dest": str(tmp_path / "no-such-dir")})
    result = doctor(box, "--skip-network")
    assert result.exit_code == 1
    assert rows(result)["backup"][0] == "PROBLEM"


def test_skew_findings_read_plainly() -> None:
    ok = checks._clock_findings([("kraken", 0.2, "its time endpoint")])
    warn = checks._clock_findings([("kraken", -2.0, "its time endpoint")])
    bad = checks._clock_findings([("binance", 9.0, "its time endpoint"), ("kraken", 0.1, "x")])
    assert ok[0].status == "ok" and warn[0].status == "warning" and bad[0].status == "PROBLEM"
    assert "2.0 s ahead of kraken" in warn[0].message
    assert "9.0 s behind binance" in bad[0].message


def test_secrets_for_the_env_provider_are_not_reported_as_typos() -> None:
    """VIGATRA_SECRET_<NAME> holds a secret for the env key provider (the SMTP relay's password): not a
    configuration key, and not a typo either; a mistyped key still is."""
    settings = Settings()
    env = {"VIGATRA_SECRET_SMTP_PASSWORD": "x", "VIGATRA_SERVER__PORTT": "1", "VIGATRA_CONFIG": "/etc/v.yaml"}
    (finding,) = checks.check_environment(settings, env, lambda name: False)
    assert finding.status == "warning" and "VIGATRA_SERVER__PORTT" in finding.message
    assert "SECRET" not in finding.message
    assert checks.check_environment(settings, {"VIGATRA_SECRET_SMTP_PASSWORD": "x"}, lambda name: False) == []
