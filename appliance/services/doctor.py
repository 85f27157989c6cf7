"""`vigatra doctor`: every check IT needs before and after an install, each answered in one plain sentence
that says what is wrong and how to fix it.

The checks read and never write: a mistyped SQLite path is reported, never created; the database
is opened only after its file was found; venues get one public request each, through the egress
layer. Each check is a function returning :class:`Finding` rows, so a test can drive any one alone.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import socket
import ssl
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.errors import KeyProviderError, VigatraError
from appliance.settings import NON_CONFIG_ENV, SECRET_ENV_PREFIX, Settings

OK, WARNING, PROBLEM = "ok", "warning", "PROBLEM"
# Venues refuse signed requests whose timestamp is a few seconds off (Binance's default recvWindow is
# 5 s); warn well before that, and call it a problem past it.
SKEW_WARN_SECONDS = 1.0
SKEW_PROBLEM_SECONDS = 5.0
SERVICE_USER = "vigatra"


@dataclass(frozen=True)
class Finding:
    check: str
    status: str
    message: str

    def row(self) -> list[str]:
        return [self.check, self.status, self.message]


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def service_uid() -> int | None:
    """Whose files these should be: this user, or (when doctor runs as root) the service user."""
    if os.geteuid() != 0:
        return os.geteuid()
    try:
        return pwd.getpwnam(SERVICE_USER).pw_uid
    except KeyError:
        return None


# -------------------------------------------------------------------------------------------------
# Configuration and files


def check_environment(settings: Settings, env: Mapping[str, str], is_config_env: Callable[[str], bool]
                      ) -> list[Finding]:
    # VIGATRA_SECRET_*: secrets the env key provider holds for other systems (the SMTP relay's password).
    unknown = sorted(k for k in env if k.startswith("VIGATRA_") and k not in NON_CONFIG_ENV
                     and k != settings.keys.env_var and not is_config_env(k) and not k.startswith(SECRET_ENV_PREFIX))
    if not unknown:
        return []
    return [Finding("environment", WARNING, f"VIGATRA_* variables that are not configuration keys (a typo?): "
                                            f"{', '.join(unknown)}; remove or rename them")]


def check_data_dir(settings: Settings, uid: int | None) -> list[Finding]:
    data_dir = settings.data_dir
    if not data_dir.is_dir():
        return [Finding("data dir", PROBLEM, f"{data_dir} does not exist: check data_dir in {settings.source} "
                                             "(install.sh creates /var/lib/vigatra)")]
    st = data_dir.stat()
    mode = stat.S_IMODE(st.st_mode)
    out: list[Finding] = []
    if uid is not None and st.st_uid != uid:
        owner, service = _owner_name(st.st_uid), _owner_name(uid)
        out.append(Finding("data dir", PROBLEM, f"{data_dir} is owned by {owner}, but the appliance runs as "
                                                f"{service} and cannot write its database there; fix: "
                                                f"chown -R {service}:{service} {data_dir}"))
    if mode & 0o077:
        out.append(Finding("data dir", PROBLEM, f"{data_dir} has mode {mode:04o}: other users can look inside; "
                                                f"fix: chmod 0700 {data_dir}"))
    if not out:
        out.append(Finding("data dir", OK, f"{data_dir} (mode {mode:04o}, owner {_owner_name(st.st_uid)})"))
    return out


def check_file_modes(settings: Settings, uid: int | None) -> list[Finding]:
    """Files in the data dir belong to the service user and nobody else reads them; the configuration
    file is not writable by anyone but root (the service must not be able to rewrite its own config)."""
    out: list[Finding] = []
    if settings.data_dir.is_dir():
        try:
            entries = sorted(settings.data_dir.iterdir())
        except PermissionError:
            entries = []
            out.append(Finding("file modes", PROBLEM, f"cannot list {settings.data_dir} as {_owner_name(os.geteuid())}"
                                                      "; run doctor as the service user or as root"))
        config_path = Path(settings.source).absolute()
        for path in entries:
            if path.absolute() == config_path:  # `vigatra init` writes it here (0640); checked below
                continue
            st = path.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if uid is not None and st.st_uid != uid:
                service = _owner_name(uid)
                out.append(Finding("file modes", PROBLEM, f"{path} is owned by {_owner_name(st.st_uid)}, not by "
                                                          f"{service}; fix: chown {service}:{service} {path}"))
            if mode & 0o077 and not stat.S_ISLNK(st.st_mode):
                out.append(Finding("file modes", PROBLEM, f"{path} has mode {mode:04o}: group or others can read "
                                                          f"it; fix: chmod go-rwx {path}"))
    config = Path(settings.source)
    if config.is_file():
        st = config.stat()
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o022:
            out.append(Finding("file modes", PROBLEM, f"{config} has mode {mode:04o}: others may change the "
                                                      f"configuration; fix: chmod 0640 {config}"))
        elif mode & 0o004:
            out.append(Finding("file modes", WARNING, f"{config} is world-readable (mode {mode:04o}); it holds no "
                                                      f"secrets, but 0640 (root:{SERVICE_USER}) is enough"))
        elif uid is not None and st.st_uid == uid and os.geteuid() != uid and os.geteuid() == 0:
            out.append(Finding("file modes", WARNING, f"{config} is owned by the service user, which could rewrite "
                                                      f"it; fix: chown root:{SERVICE_USER} {config}"))
    if not out:
        out.append(Finding("file modes", OK, "data files owner-only; configuration not writable by others"))
    return out


# -------------------------------------------------------------------------------------------------
# Database


def sqlite_file(settings: Settings) -> Path | None:
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        return None
    return Path(url.database or "")


def check_database(settings: Settings) -> tuple[list[Finding], bool]:
    """The schema revision; (findings, True when the database can be opened for the key check)."""
    from appliance.store.migrate import current_revision, head_revision
    from appliance.store.session import describe_db_error, engine_from_settings

    path = sqlite_file(settings)
    if path is not None:
        problem = _sqlite_file_problem(path)
        if problem:
            return [Finding("database", PROBLEM, problem)], False
    try:
        engine = engine_from_settings(settings)
    except VigatraError as exc:
        return [Finding("database", PROBLEM, exc.message)], False
    try:
        rev = current_revision(engine)
    except Exception as exc:  # noqa: BLE001 - doctor reports every failure as a finding
        return [Finding("database", PROBLEM, f"cannot connect: {describe_db_error(exc)}")], False
    finally:
        engine.dispose()
    head = head_revision()
    if rev is None:
        return [Finding("database", PROBLEM, "the database has no Vigatra schema: database.url points at the wrong "
                                             "database, or it was never initialised (vigatra init)")], False
    if rev == head:
        return [Finding("database", OK, f"revision {rev} (newest)")], True
    from appliance.store.dump import known_revisions

    if rev not in known_revisions():
        return [Finding("database", PROBLEM, f"revision {rev} was made by a newer release of Vigatra than this one "
                                             f"(newest known here: {head}); install that release again "
                                             "(install.sh --rollback undoes a downgrade)")], False
    return [Finding("database", PROBLEM, f"revision {rev}, but this release needs {head}: run `vigatra db upgrade` "
                                         "(install.sh does this on an upgrade)")], True


def _sqlite_file_problem(path: Path) -> str:
    """Why the SQLite file cannot be used, in words; '' if it can. Never creates the file."""
    if not path.is_absolute():
        return f"the SQLite path {path} is relative; use an absolute path in database.url"
    me = _owner_name(os.geteuid())
    for ancestor in reversed(path.parents):
        if ancestor.is_dir() and not os.access(ancestor, os.X_OK):
            st = ancestor.stat()
            return (f"{me} cannot reach the SQLite database {path}: the directory {ancestor} is owned by "
                    f"{_owner_name(st.st_uid)} with mode {stat.S_IMODE(st.st_mode):04o}; fix: chown -R {me}:{me} "
                    f"{ancestor} (if it is the data dir) or open up its mode")
    if not path.exists():
        parent = "" if path.parent.is_dir() else f" (and its directory {path.parent} does not exist either)"
        return (f"the SQLite database {path} does not exist{parent}: database.url or data_dir is mistyped, or the "
                "appliance was never initialised (vigatra init); doctor does not create it")
    if not os.access(path, os.R_OK | os.W_OK):
        st = path.stat()
        return (f"the SQLite database {path} is owned by {_owner_name(st.st_uid)} with mode "
                f"{stat.S_IMODE(st.st_mode):04o}, so {me} cannot open it for writing; fix: chown {me}:{me} {path}")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        owner = _owner_name(path.parent.stat().st_uid)
        return (f"the directory {path.parent} (owner {owner}) is not writable by {me}; SQLite must create its "
                f"-wal and -shm files there; fix: chown {me}:{me} {path.parent}")
    return ""


# -------------------------------------------------------------------------------------------------
# Keys


def check_key_provider(settings: Settings, *, database_ok: bool) -> list[Finding]:
    """The provider can give its KEK, and that KEK is the one the data keys in the database were wrapped under."""
    from appliance.crypto import provider_from_settings

    try:
        provider = provider_from_settings(settings)
        provider.check()
    except KeyProviderError as exc:
        return [Finding("key provider", PROBLEM, exc.message + _provider_hint(settings))]
    out = [Finding("key provider", OK, provider.describe())]
    if not database_ok:
        return out
    out.append(_check_kek_against_data_keys(settings, provider))
    return out


def _provider_hint(settings: Settings) -> str:
    if settings.keys.provider == "systemd" and not os.environ.get("CREDENTIALS_DIRECTORY"):
        return ("; the credential is only visible inside the unit: run `sudo vigatra doctor`, which reads it the way "
                "vigatra.service does (through a transient unit)")
    return ""


def _check_kek_against_data_keys(settings: Settings, provider: Any) -> Finding:
    from sqlalchemy import select

    from appliance.services.keys import wrap_context
    from appliance.store.models import KeyVersion
    from appliance.store.session import Store

    store = Store.from_settings(settings)
    try:
        with store.read() as session:
            rows = session.execute(select(KeyVersion.version, KeyVersion.wrapped_key, KeyVersion.kek_id)
                                   .where(KeyVersion.status != "retired")).all()
    except Exception as exc:  # noqa: BLE001 - reported as a finding
        from appliance.store.session import describe_db_error

        return Finding("KEK", PROBLEM, f"cannot read the data keys: {describe_db_error(exc)}")
    finally:
        store.dispose()
    if not rows:
        return Finding("KEK", PROBLEM, "the database holds no data key: run `vigatra keys init`")
    for version, wrapped, stored_kek in rows:
        try:
            provider.unwrap(bytes(wrapped), context=wrap_context(int(version)))
        except KeyProviderError:
            return Finding("KEK", PROBLEM, f"wrong KEK: the {provider.name} provider holds {provider.kek_id()}, but "
                                           f"data key version {version} was wrapped under {stored_kek}; the appliance "
                                           "will refuse to start. Fix: configure the KEK this database was made "
                                           "with (restore it from your offline copy)")
        except VigatraError as exc:
            return Finding("KEK", PROBLEM, f"data key version {version} does not open: {exc.message}")
    return Finding("KEK", OK, f"opens all {len(rows)} live data key(s) ({provider.kek_id()})")


# -------------------------------------------------------------------------------------------------
# Web front: public_url and TLS


def _is_loopback_host(host: str) -> bool:
    import ipaddress

    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_public_url(settings: Settings) -> list[Finding]:
    """server.public_url is set and is https: onboarding links are built from it alone (never from a request's
    Host header), and HSTS depends on a name."""
    from appliance.services.onboarding import public_base

    url = settings.server.public_url
    if not url:
        return [Finding("public_url", PROBLEM, f"server.public_url is not set: onboarding links name "
                                               f"{public_base(settings)}, which employees may not reach; set "
                                               f"server.public_url: https://<the appliance's name> in "
                                               f"{settings.source} (vigatra init --public-url does it for new "
                                               "installs)")]
    parts = urlsplit(url)
    if parts.scheme != "https":
        return [Finding("public_url", WARNING, f"server.public_url {url} is not https: only acceptable for a demo on "
                                               "this machine")]
    host = parts.hostname or ""
    if _is_loopback_host(host) and not settings.server.dev_allow_insecure_onboarding:
        return [Finding("public_url", WARNING, f"server.public_url {url} names this machine only: employees cannot "
                                               "open onboarding links from their own devices")]
    try:
        import ipaddress

        ipaddress.ip_address(host)
        return [Finding("public_url", WARNING, f"server.public_url {url} is an IP address: HSTS does nothing for IP "
                                               "addresses; give the appliance a DNS name")]
    except ValueError:
        pass
    return [Finding("public_url", OK, url)]


def check_listen_address(settings: Settings) -> list[Finding]:
    """waitress speaks plain HTTP; it must listen on loopback behind the TLS front."""
    host = settings.server.host
    if _is_loopback_host(host):
        return [Finding("listen address", OK, f"{host}:{settings.server.port} (loopback, behind the TLS front)")]
    return [Finding("listen address", PROBLEM, f"server.host is {host}: waitress would serve plain HTTP (no TLS) to "
                                               "the network; set server.host: 127.0.0.1 and put nginx or Caddy in "
                                               "front (packaging/nginx/vigatra.conf)")]


def check_trusted_proxies(settings: Settings) -> list[Finding]:
    """X-Forwarded-Proto is believed from server.trusted_proxies. Loopback is the default (the bundled nginx or
    Caddy run there; docs/SECURITY.md, 'Loopback and TLS'); any other address listed can make a plain-HTTP
    request count as TLS."""
    import ipaddress

    proxies = settings.server.trusted_proxies
    outside = [p for p in proxies if not ipaddress.ip_network(p, strict=False).is_loopback]
    if outside:
        return [Finding("trusted proxies", WARNING, f"X-Forwarded-Proto is believed from {', '.join(outside)}: every "
                                                    "host there can make a plain-HTTP request count as TLS; list only "
                                                    "the TLS front's own address")]
    return [Finding("trusted proxies", OK, f"{', '.join(proxies) or 'none'} (loopback: the local TLS front)")]


def check_tls_front(settings: Settings, *, timeout: float = 5.0) -> list[Finding]:
    """Something answers TLS at public_url with a certificate this host trusts for that name."""
    parts = urlsplit(settings.server.public_url)
    if parts.scheme != "https" or not parts.hostname:
        return []
    host, port = parts.hostname, parts.port or 443
    context = ssl.create_default_context()
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return [Finding("TLS front", WARNING, f"{host}:{port} answers TLS, but its certificate is not trusted by this "
                                              f"host ({exc.verify_message}); browsers of your users must trust it")]
    except ssl.SSLError as exc:
        return [Finding("TLS front", PROBLEM, f"{host}:{port} does not speak TLS ({exc.reason}): is nginx/Caddy "
                                              "configured with a certificate?")]
    except OSError as exc:
        return [Finding("TLS front", PROBLEM, f"nothing answers at {host}:{port} ({exc.strerror or exc}): put nginx "
                                              "or Caddy in front (packaging/nginx/vigatra.conf) and check DNS")]
    return [Finding("TLS front", OK, f"{host}:{port} answers {version} with a trusted certificate")]


# -------------------------------------------------------------------------------------------------
# Venues: egress and clock skew


def enabled_venues(settings: Settings) -> list[str]:
    return [venue for venue, conf in settings.venues.items() if conf.enabled]


def check_venues(settings: Settings, *, probe: Callable[..., Any] | None = None) -> list[Finding]:
    """One public request to each enabled venue through the egress layer; the skew of our clock to theirs."""
    from appliance.venues.egress import Egress
    from appliance.venues.probe import probe as default_probe

    run = probe or default_probe
    venues = enabled_venues(settings)
    if not venues:
        return [Finding("egress", WARNING, "no venue is enabled (venues.<id>.enabled); nothing will be polled")]
    egress = Egress(settings)
    out: list[Finding] = []
    skews: list[tuple[str, float, str]] = []
    for venue in venues:
        result = run(egress, venue)
        via = f" via proxy {settings.egress.proxy}" if settings.egress.proxy else ""
        if result.ok:
            out.append(Finding(f"egress {venue}", OK, f"{result.url}{via}: {result.detail}"))
            if result.skew_seconds is not None:
                skews.append((venue, result.skew_seconds, result.time_source))
        else:
            out.append(Finding(f"egress {venue}", PROBLEM, f"{result.url or venue}{via}: {result.detail}; allow "
                                                           "this host in the firewall or egress gateway, or disable "
                                                           f"the venue (venues.{venue}.enabled: false)"))
    out.extend(_clock_findings(skews))
    return out


def _clock_findings(skews: Iterable[tuple[str, float, str]]) -> list[Finding]:
    listed = list(skews)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if not listed:
        return [Finding("clock", WARNING, f"UTC now {now}; no venue answered with its time, so the skew is unknown "
                                          "(keep NTP on)")]
    worst_venue, worst, source = max(listed, key=lambda item: abs(item[1]))
    direction = "ahead of" if worst < 0 else "behind"
    text = (f"this host's clock is {abs(worst):.1f} s {direction} {worst_venue} ({source}); UTC now {now}")
    if abs(worst) >= SKEW_PROBLEM_SECONDS:
        return [Finding("clock", PROBLEM, f"{text}: venues refuse signed requests this far off; fix: enable NTP "
                                          "(timedatectl set-ntp true) or point chrony at your time server")]
    if abs(worst) >= SKEW_WARN_SECONDS:
        return [Finding("clock", WARNING, f"{text}: keep NTP on before it grows past {SKEW_PROBLEM_SECONDS:g} s")]
    return [Finding("clock", OK, text)]


# -------------------------------------------------------------------------------------------------
# Backups


def check_backups(settings: Settings) -> list[Finding]:
    dest = settings.backup.dest
    if not dest:
        return [Finding("backup", WARNING, "no scheduled backup (backup.dest is empty): set backup.dest, or run "
                                           "`vigatra backup create --dest DIR` from your own scheduler")]
    path = Path(dest)
    if not path.is_dir():
        return [Finding("backup", PROBLEM, f"backup.dest {dest} does not exist; create it (owner {SERVICE_USER}, "
                                           "mode 0700)")]
    if not os.access(path, os.W_OK | os.X_OK):
        return [Finding("backup", PROBLEM, f"backup.dest {dest} is not writable by {_owner_name(os.geteuid())}")]
    from appliance.services.backup import list_backups

    backups = list_backups(path)
    if not backups:
        return [Finding("backup", WARNING, f"no backup in {dest} yet (the first scheduled one runs 10 minutes after "
                                           "start)")]
    newest = dt.datetime.strptime(backups[-1].name.split("-")[2], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    age_hours = (dt.datetime.now(dt.UTC) - newest).total_seconds() / 3600
    if age_hours > 2 * settings.backup.interval_hours:
        return [Finding("backup", PROBLEM, f"the newest backup in {dest} is {age_hours:.0f} h old, more than twice "
                                           f"backup.interval_hours: is the service running? see journalctl -u vigatra")]
    return [Finding("backup", OK, f"{len(backups)} backup(s) in {dest}, newest {age_hours:.1f} h old")]
