"""`vigatra doctor`: configuration, files, database, keys, web front, venues, clock and backups in plain words.

The checks live in services/doctor.py; this module prints them and handles the one thing only a
command can: with ``keys.provider: systemd`` the KEK is a credential systemd decrypts for the unit
alone, so a plain `vigatra doctor` cannot see it. Run as root, doctor then re-runs itself inside a
transient unit that loads the same credential the way vigatra.service does (``systemd-run -p
LoadCredentialEncrypted=...`` as the service user); otherwise it says how to.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from appliance.cli.common import cli_state, echo_table, handle_errors

UNIT = "vigatra.service"
DEFAULT_CREDENTIAL = "vigatra-kek:/etc/vigatra/credentials/vigatra-kek.cred"


def _is_config_env(name: str) -> bool:
    from appliance.settings import describe, env_name

    return any(env_name(path) == name for path, _default, _doc in describe())


def _unit_property(name: str) -> str:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return ""
    result = subprocess.run([systemctl, "show", "--property", name, "--value", UNIT], capture_output=True, text=True,
                            timeout=30, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def _credential_property(settings: object) -> str:
    """The unit's LoadCredentialEncrypted= for the KEK (systemctl show), else install.sh's default."""
    name = getattr(getattr(settings, "keys", None), "systemd_credential", "vigatra-kek")
    for entry in _unit_property("LoadCredentialEncrypted").split():
        if entry.split(":", 1)[0] == name:
            return entry
    path = Path(DEFAULT_CREDENTIAL.split(":", 1)[1])
    return f"{name}:{path}" if path.exists() else ""


def _rerun_in_unit(config: str | None, skip_network: bool) -> int | None:
    """Run doctor again inside a transient unit holding the credential; None when that is not possible here."""
    systemd_run = shutil.which("systemd-run")
    if os.geteuid() != 0 or systemd_run is None or not Path("/run/systemd/system").is_dir():
        return None
    settings = cli_state().settings()
    credential = _credential_property(settings)
    if not credential:
        return None
    user = _unit_property("User") or "vigatra"
    command = [systemd_run, "--quiet", "--wait", "--pipe", "--collect", "--service-type=exec",
               f"--uid={user}", f"--gid={user}", "-p", "UMask=0077", "-p", f"LoadCredentialEncrypted={credential}",
               sys.executable, "-m", "appliance.cli.main"]
    if config:
        command += ["--config", str(Path(config).absolute())]
    command += ["doctor", "--in-unit"] + (["--skip-network"] if skip_network else [])
    click.echo(f"reading the KEK credential the way {UNIT} does: a transient unit as {user} with "
               f"LoadCredentialEncrypted={credential}", err=True)
    return subprocess.run(command, check=False).returncode


@click.command()
@click.option("--skip-network", is_flag=True,
              help="Skip the checks that send requests (venues' egress and clock, the TLS front).")
@click.option("--in-unit", is_flag=True, hidden=True)
@handle_errors
def doctor(skip_network: bool, in_unit: bool) -> None:
    """Check configuration, files, database, keys, TLS front, venues, clock and backups; exit 1 on any problem."""
    from appliance.errors import VigatraError
    from appliance.services import doctor as checks
    from appliance.settings import load_settings

    state = cli_state()
    try:
        settings = load_settings(state.config)
    except VigatraError as exc:
        echo_table([["configuration", checks.PROBLEM, exc.message]], ["check", "result", "detail"])
        raise SystemExit(1) from None
    if settings.keys.provider == "systemd" and not os.environ.get("CREDENTIALS_DIRECTORY") and not in_unit:
        code = _rerun_in_unit(state.config, skip_network)
        if code is not None:
            raise SystemExit(code)
    findings = [checks.Finding("configuration", checks.OK, settings.source)]
    findings += checks.check_environment(settings, os.environ, _is_config_env)
    uid = checks.service_uid()
    findings += checks.check_data_dir(settings, uid)
    findings += checks.check_file_modes(settings, uid)
    database, database_ok = checks.check_database(settings)
    findings += database
    findings += checks.check_key_provider(settings, database_ok=database_ok)
    findings += checks.check_public_url(settings)
    findings += checks.check_listen_address(settings)
    findings += checks.check_trusted_proxies(settings)
    if settings.server.dev_allow_insecure_onboarding:
        findings.append(checks.Finding("onboarding", checks.PROBLEM, "server.dev_allow_insecure_onboarding is on: "
                                                                     "for a localhost demo only; remove it"))
    if not skip_network:
        findings += checks.check_tls_front(settings)
        findings += checks.check_venues(settings)
    findings += checks.check_backups(settings)
    echo_table([f.row() for f in findings], ["check", "result", "detail"])
    problems = [f for f in findings if f.status == checks.PROBLEM]
    if problems:
        click.echo(f"vigatra: {len(problems)} problem(s); first: {problems[0].check}: {problems[0].message}", err=True)
        raise SystemExit(1)


__all__ = ["doctor"]
