"""The settings object and how it is loaded: file, then ``VIGATRA_*`` variables, then the checks."""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from appliance.errors import ConfigError
from appliance.settings.checks import (
    _cross_check,
)
from appliance.settings.people import (
    AttestationSettings,
    DirectorySettings,
    PortalSettings,
    PreclearanceSettings,
    RosterSettings,
)
from appliance.settings.sections import (
    DEFAULT_CONFIG_PATH,
    ENV_PREFIX,
    MAP_KEYS,
    NON_CONFIG_ENV,
    SECRET_ENV_PREFIX,
    VENUE_IDS,
    AlertSettings,
    AuditSettings,
    AuthSettings,
    BackupSettings,
    ChainSettings,
    DatabaseSettings,
    DisplaySettings,
    EgressSettings,
    KeySettings,
    LoggingSettings,
    NotificationSettings,
    OnboardingSettings,
    PollerSettings,
    RulesSettings,
    ServerSettings,
    ValuationSettings,
    VenueSettings,
    _bad,
    _doc,
)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default=Path("/var/lib/vigatra"), metadata=_doc(
        "Directory holding the SQLite database and runtime state. Owned by the service user, mode 0700."))
    appliance_id: str = field(default="", metadata=_doc(
        "Stable identifier of this installation (written by `vigatra init`); appears in audit exports."))
    server: ServerSettings = field(default_factory=ServerSettings, metadata=_doc("The HTTP server."))
    database: DatabaseSettings = field(default_factory=DatabaseSettings, metadata=_doc("The store."))
    logging: LoggingSettings = field(default_factory=LoggingSettings, metadata=_doc("Logging."))
    poller: PollerSettings = field(default_factory=PollerSettings, metadata=_doc("The background poller."))
    auth: AuthSettings = field(default_factory=AuthSettings, metadata=_doc("Users, sessions and tokens."))
    audit: AuditSettings = field(default_factory=AuditSettings, metadata=_doc("The audit trail."))
    onboarding: OnboardingSettings = field(default_factory=OnboardingSettings, metadata=_doc(
        "Employee onboarding links."))
    alerts: AlertSettings = field(default_factory=AlertSettings, metadata=_doc("Alerts and flagged scope."))
    rules: RulesSettings = field(default_factory=RulesSettings, metadata=_doc(
        "The evaluation of the conduct rules."))
    notifications: NotificationSettings = field(default_factory=NotificationSettings, metadata=_doc(
        "E-mail to compliance: new critical alerts, assignments, onboarding links."))
    backup: BackupSettings = field(default_factory=BackupSettings, metadata=_doc(
        "Scheduled encrypted backups (`vigatra backup create` makes one by hand)."))
    directory: DirectorySettings = field(default_factory=DirectorySettings, metadata=_doc(
        "Single sign-on for dashboard users: the firm's LDAP directory / Active Directory, or its OpenID Connect "
        "provider, with directory groups mapped to roles."))
    roster: RosterSettings = field(default_factory=RosterSettings, metadata=_doc(
        "The monitored employees kept in step with the directory or HR exports (`vigatra roster sync`)."))
    keys: KeySettings = field(default_factory=KeySettings, metadata=_doc(
        "Encryption keys. Secrets never go in this file, only where the provider finds them."))
    egress: EgressSettings = field(default_factory=EgressSettings, metadata=_doc(
        "Outbound traffic: every venue request leaves through this layer."))
    venues: dict[str, VenueSettings] = field(default_factory=dict, metadata=_doc(
        "Per-venue settings, keyed by venue id."))
    chains: ChainSettings = field(default_factory=ChainSettings, metadata=_doc(
        "Self-custody wallets: the chain endpoints the customer configures."))
    valuation: ValuationSettings = field(default_factory=ValuationSettings, metadata=_doc(
        "Values in the firm's currency: where prices come from and how long they are kept."))
    display: DisplaySettings = field(default_factory=DisplaySettings, metadata=_doc(
        "How the pages show times."))
    portal: PortalSettings = field(default_factory=PortalSettings, metadata=_doc(
        "The employee portal (/me): sign-in links and sessions."))
    preclearance: PreclearanceSettings = field(default_factory=PreclearanceSettings, metadata=_doc(
        "Pre-clearance: how long approvals last, the tolerance, automatic approval."))
    attestations: AttestationSettings = field(default_factory=AttestationSettings, metadata=_doc(
        "Certifications and the code of ethics (SEC Rule 204A-1): due dates and reminders."))
    # Where the settings came from, for messages and `vigatra doctor`; not a configuration key.
    source: str = field(default="defaults", metadata={"internal": True})

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.data_dir / 'vigatra.db'}"

    def venue(self, venue_id: str) -> VenueSettings:
        return self.venues.get(venue_id) or VenueSettings()


# ---------------------------------------------------------------------------------------------
# Loading


def resolve_config_path(explicit: str | Path | None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get("VIGATRA_CONFIG"):
        return Path(env["VIGATRA_CONFIG"])
    return DEFAULT_CONFIG_PATH


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration. Raises ConfigError with one clear line."""
    env = os.environ if env is None else env
    config_path = resolve_config_path(path, env)
    if not config_path.exists():
        raise ConfigError(
            f"configuration file {config_path} does not exist (pass --config PATH or set VIGATRA_CONFIG; "
            "`vigatra init` writes one)")
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {config_path}: {exc.strerror}") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a yaml.SafeLoader that refuses repeated keys
    except _RepeatedKey as exc:
        raise ConfigError(f"configuration file {config_path} repeats the key '{exc.key}' at line {exc.line} (first at "
                          f"line {exc.first_line}); a repeated key would silently replace the first one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"configuration file {config_path} is not valid YAML{where}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration file {config_path} must hold a mapping of keys, not {type(raw).__name__}")
    return settings_from_mapping(raw, env=env, source=str(config_path))


# Keys that moved: a configuration still naming the old key is told where it went.
MOVED_KEYS = {
    ("onboarding", "smtp_host"): "notifications.smtp.host",
    ("onboarding", "smtp_port"): "notifications.smtp.port",
    ("onboarding", "smtp_starttls"): "notifications.smtp.starttls",
    ("onboarding", "smtp_from"): "notifications.smtp.sender",
}


def _check_moved(raw: Mapping[str, Any], env: Mapping[str, str], source: str) -> None:
    for (section, key), target in MOVED_KEYS.items():
        old = ".".join((section, key))
        values = raw.get(section)
        if isinstance(values, dict) and key in values:
            raise ConfigError(f"configuration key '{old}' in {source} moved to '{target}'")
        if env_name((section, key)) in env:
            raise ConfigError(f"environment variable {env_name((section, key))} is no longer read: "
                              f"configuration key '{old}' moved to '{target}' ({env_name(tuple(target.split('.')))})")


class _RepeatedKey(yaml.YAMLError):
    def __init__(self, key: object, line: int, first_line: int) -> None:
        super().__init__(f"repeated key {key!r}")
        self.key, self.line, self.first_line = key, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping, at any depth. PyYAML keeps the last
    one silently, so a second ``server:`` section further down would drop everything the first one set.
    Merge keys (``<<: *base``) are YAML's way to override on purpose and stay allowed."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader itself refuses it with its own message
                continue
            if first is not None:
                raise _RepeatedKey(key, key_node.start_mark.line + 1, first)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def settings_from_mapping(raw: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
                          source: str = "<mapping>") -> Settings:
    env = {} if env is None else env
    _check_moved(raw, env, source)
    values = _build(Settings, dict(raw), (), env, source)
    values["source"] = source
    settings = Settings(**values)
    _cross_check(settings, source)
    _check_environment(settings, env)
    return settings


def _is_kek_variable(name: str) -> bool:
    """A variable holding a key-encryption key for the env key provider (keys.env_var, or the next one
    during `vigatra keys rewrap --key-env`): not a configuration key, never refused."""
    return "KEK" in name[len(ENV_PREFIX):].split("_")


def config_env_names(settings: Settings | None = None) -> list[str]:
    """Every VIGATRA_* variable that sets a configuration key (for a free-form map such as chains.evm,
    the keys of the entries the configuration names: VIGATRA_CHAINS_EVM_ETHEREUM_RPC_URL)."""
    from appliance.settings.docs import describe  # the documentation walks the same schema

    names: list[str] = []
    for path, default, _text in describe():
        if default is None and _container(path):
            continue
        if "<name>" in path:
            at = path.index("<name>")
            names.extend(env_name((*path[:at], str(key), *path[at + 1:])) for key in _map_keys(settings, path[:at]))
        else:
            names.append(env_name(path))
    return names


def _map_keys(settings: Settings | None, path: tuple[str, ...]) -> list[Any]:
    found: Any = settings
    for part in path:
        found = getattr(found, part, None)
    return list(found) if isinstance(found, dict) else []


def _container(path: tuple[str, ...]) -> bool:
    """Whether ``path`` names a section or a map (which no variable sets), not a key."""
    cls: Any = Settings
    for part in path:
        if not dataclasses.is_dataclass(cls):
            return False
        hints = typing.get_type_hints(cls)
        if part not in hints:  # a map's key: the map's item type describes what follows
            continue
        tp = hints[part]
        cls = get_args(tp)[1] if get_origin(tp) is dict else tp
    return dataclasses.is_dataclass(cls) or get_origin(cls) is dict


def _check_environment(settings: Settings, env: Mapping[str, str]) -> None:
    """Refuse a VIGATRA_* variable that sets nothing: a misspelt override would otherwise be ignored and
    the appliance would run on a value the operator believes changed."""
    unknown = sorted(name for name in env if name.startswith(ENV_PREFIX) and name not in NON_CONFIG_ENV
                     and not name.startswith(SECRET_ENV_PREFIX)  # named secrets (the env key provider's)
                     and name != settings.keys.env_var and not _is_kek_variable(name))
    if not unknown:
        return
    known = config_env_names(settings)
    unknown = [name for name in unknown if name not in known]
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, known + sorted(NON_CONFIG_ENV), n=1, cutoff=0.0)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ConfigError(f"unknown environment variable {name}: no configuration key is named so{hint}")


def env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + "_".join(p.upper() for p in path)


def _fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _build(cls: type, raw: dict[str, Any], prefix: tuple[str, ...], env: Mapping[str, str], source: str
           ) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in _fields(cls):
        path = (*prefix, f.name)
        tp: Any = hints[f.name]
        present = f.name in raw
        value = raw.pop(f.name, None)
        if dataclasses.is_dataclass(tp):
            if present and value is not None and not isinstance(value, dict):
                raise _bad(path, source, "expected a mapping of keys")
            sub: Any = tp
            out[f.name] = sub(**_build(sub, dict(value or {}), path, env, source))
            continue
        if get_origin(tp) is dict:
            out[f.name] = _build_dict(tp, value, path, env, source, present)
            continue
        name = env_name(path)
        if name in env:
            out[f.name] = _coerce(tp, env[name], path, f"environment variable {name}", from_env=True, meta=f.metadata)
        elif present:
            out[f.name] = _coerce(tp, value, path, source, from_env=False, meta=f.metadata)
    if raw:
        unknown = ".".join((*prefix, sorted(raw)[0]))
        raise ConfigError(f"unknown configuration key '{unknown}' in {source}")
    return out


def _build_dict(tp: Any, value: Any, path: tuple[str, ...], env: Mapping[str, str], source: str, present: bool
                ) -> dict[str, Any]:
    _key_type, item_type = get_args(tp)
    if present and value is not None and not isinstance(value, dict):
        raise _bad(path, source, "expected a mapping of keys")
    raw = dict(value or {})
    fixed = path == ("venues",)
    allowed: tuple[str, ...] = VENUE_IDS if fixed else tuple(str(k) for k in raw)
    for key in raw:
        if fixed and key not in allowed:
            raise ConfigError(f"unknown configuration key '{'.'.join((*path, str(key)))}' in {source} "
                              f"(known: {', '.join(allowed)})")
        pattern, why, _example = MAP_KEYS.get(path, MAP_KEYS[("chains", "evm")])
        if not fixed and not pattern.match(str(key)):
            raise _bad((*path, str(key)), source, why)
    out: dict[str, Any] = {}
    for key in allowed:
        sub = raw.get(key)
        if not dataclasses.is_dataclass(item_type):  # a map of plain values (directory.role_map: lists)
            if isinstance(item_type, type) or get_origin(item_type) is tuple:
                out[key] = _coerce(item_type, [sub] if isinstance(sub, str) else sub, (*path, key), source,
                                   from_env=False, meta={})
            continue
        if sub is not None and not isinstance(sub, dict):
            raise _bad((*path, key), source, "expected a mapping of keys")
        section: Any = item_type
        out[key] = section(**_build(section, dict(sub or {}), (*path, key), env, source))
    return out


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(tp: Any, value: Any, path: tuple[str, ...], source: str, *, from_env: bool, meta: Mapping[str, Any]
            ) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in (types.UnionType, typing.Union):
        non_none = [a for a in args if a is not type(None)]
        if value is None or (from_env and value == ""):
            return None
        return _coerce(non_none[0], value, path, source, from_env=from_env, meta=meta)
    if origin is Literal:
        text = str(value) if value is not None else ""
        if text not in args:
            raise _bad(path, source, f"must be one of {', '.join(map(str, args))}, got {text!r}")
        return text
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _bad(path, source, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise _bad(path, source, f"expected an integer, got {value!r}")
        try:
            number = int(str(value).strip()) if isinstance(value, str) else value
        except ValueError:
            raise _bad(path, source, f"expected an integer, got {value!r}") from None
        if not isinstance(number, int):
            raise _bad(path, source, f"expected an integer, got {value!r}")
        low, high = meta.get("min"), meta.get("max")
        if (low is not None and number < low) or (high is not None and number > high):
            raise _bad(path, source, f"must be between {low} and {high}, got {number}")
        return number
    if tp is float:
        if isinstance(value, bool):
            raise _bad(path, source, f"expected a number, got {value!r}")
        try:
            real = float(value)
        except (TypeError, ValueError):
            raise _bad(path, source, f"expected a number, got {value!r}") from None
        low, high = meta.get("min"), meta.get("max")
        if (low is not None and real < low) or (high is not None and real > high):
            raise _bad(path, source, f"must be between {low} and {high}, got {real}")
        return real
    if tp is str:
        if value is None or isinstance(value, (dict, list, bool)):
            raise _bad(path, source, f"expected a string, got {value!r}")
        return str(value)
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise _bad(path, source, f"expected a path, got {value!r}")
        return Path(value)
    if origin is tuple:
        items: Any = value
        if from_env and isinstance(value, str):
            items = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(items, list):
            raise _bad(path, source, f"expected a list, got {value!r}")
        return tuple(_coerce(args[0], item, path, source, from_env=from_env, meta=meta) for item in items)
    raise _bad(path, source, f"unsupported type {tp!r}")  # a schema bug, caught by the tests


