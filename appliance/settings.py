"""Typed, frozen settings and the one function that loads them.

Layers, lowest first: the defaults written here -> the YAML file (``--config`` or ``VIGATRA_CONFIG``,
read with ``yaml.safe_load``) -> ``VIGATRA_*`` environment variables. Every key of the schema has an
environment variable named after its path (``database.url`` -> ``VIGATRA_DATABASE_URL``). Unknown
keys and bad values stop start-up with one :class:`ConfigError` line naming the key and its source.
Secrets never live here, only references to where a key provider finds them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from appliance.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/vigatra/vigatra.yaml")
ENV_PREFIX = "VIGATRA_"
# Environment variables with this prefix that are not configuration keys.
NON_CONFIG_ENV = frozenset({"VIGATRA_CONFIG", "VIGATRA_TEST_POSTGRES_URL", "VIGATRA_KEK"})

# ccxt ids of the exchanges plus the chains and prediction markets; settings validate venue keys against it.
VENUE_IDS: tuple[str, ...] = (
    "coinbase", "kraken", "binance", "binanceus", "gemini", "okx", "bybit", "kucoin", "bitstamp",
    "polymarket", "kalshi",
)
CHAIN_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# Asset codes as the venues spell them (BTC, USDT, 1INCH, USDC.E).
ASSET_CODE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,31}$")
# Free-form maps whose keys are not chain names: their key pattern, what it means, and the example key.
MAP_KEYS: dict[tuple[str, ...], tuple[re.Pattern[str], str, str]] = {
    ("chains", "evm"): (CHAIN_KEY, "names are lower-case letters, digits, - and _ (up to 32)", "ethereum"),
    ("valuation", "assets"): (ASSET_CODE, "asset codes are upper-case letters, digits, ., - and _ (up to 32)",
                              "BTC"),
}
# Where prices may come from, besides the exchanges: the prices imported with `vigatra prices import`.
PRICE_IMPORT_SOURCE = "import"
EXCHANGE_IDS: tuple[str, ...] = ("coinbase", "kraken", "binance", "binanceus", "gemini", "okx", "bybit", "kucoin",
                                 "bitstamp")


def _doc(text: str, **extra: Any) -> dict[str, Any]:
    return {"doc": text, **extra}


@dataclass(frozen=True)
class ServerSettings:
    host: str = field(default="127.0.0.1", metadata=_doc(
        "Address waitress binds to. Keep it on loopback behind the nginx/Caddy TLS front."))
    port: int = field(default=8080, metadata=_doc("TCP port waitress listens on.", min=1, max=65535))
    threads: int = field(default=16, metadata=_doc(
        "Waitress worker threads. Requests wait for their audit event to be durable; more threads let the "
        "group committer batch more events per fsync.", min=1, max=256))
    public_url: str = field(default="", metadata=_doc(
        "External https:// URL users reach the appliance at; onboarding links are built from it, never from a "
        "request's Host header. `vigatra init --public-url` writes it; empty: https:// and this machine's "
        "name, and `vigatra doctor` warns."))
    trusted_proxies: tuple[str, ...] = field(default=("127.0.0.1", "::1"), metadata=_doc(
        "Peers whose X-Forwarded-For / X-Forwarded-Proto headers are believed (IP addresses or CIDR networks)."))
    dev_allow_insecure_onboarding: bool = field(default=False, metadata=_doc(
        "Demo only: accept onboarding credentials over plain HTTP on localhost. Refused when binding a "
        "non-loopback address."))
    shutdown_timeout_seconds: int = field(default=30, metadata=_doc(
        "On SIGTERM, how long to wait for in-flight requests and poll jobs before exiting.", min=1, max=600))


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = field(default="", metadata=_doc(
        "SQLAlchemy URL. Empty: SQLite file vigatra.db in data_dir. PostgreSQL: postgresql+psycopg://user@host/db"))
    pool_size: int = field(default=10, metadata=_doc("Connection pool size (PostgreSQL).", min=1, max=200))
    busy_timeout_ms: int = field(default=10000, metadata=_doc(
        "SQLite: how long a writer waits for the lock before failing.", min=0, max=600000))
    echo: bool = field(default=False, metadata=_doc("Log every SQL statement (debugging only)."))


@dataclass(frozen=True)
class LoggingSettings:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = field(default="INFO", metadata=_doc("Log level."))
    format: Literal["text", "json"] = field(default="text", metadata=_doc(
        "text for journald, json for a log shipper."))


@dataclass(frozen=True)
class PollerSettings:
    enabled: bool = field(default=True, metadata=_doc("Run the background poller inside `vigatra serve`."))
    tick_seconds: int = field(default=30, metadata=_doc(
        "How often the scheduler looks for connections that are due.", min=1, max=3600))
    interval_minutes: int = field(default=15, metadata=_doc(
        "Default time between two polls of a connection (venues may override).", min=1, max=1440))
    workers: int = field(default=8, metadata=_doc("Connections polled at the same time by one node.", min=1, max=256))
    lease_seconds: int = field(default=300, metadata=_doc(
        "How long a node holds a connection it is polling; a dead node's leases expire after this.",
        min=10, max=3600))
    max_pages_per_sync: int = field(default=200, metadata=_doc(
        "Pages fetched per stream in one sync; the cursor resumes the rest at the next poll.", min=1, max=100000))
    failure_threshold: int = field(default=5, metadata=_doc(
        "Consecutive transient failures before a degraded connection turns broken.", min=1, max=1000))
    backoff_max_minutes: int = field(default=60, metadata=_doc(
        "Longest wait between retries of a failing connection (exponential backoff with jitter).",
        min=1, max=1440))
    require_reonboarding_after_break: bool = field(default=False, metadata=_doc(
        "A connection that broke stays re-onboarding-required, even if its key starts working again, "
        "until the employee submits a new key through a new link."))
    scope_reprobe_hours: int = field(default=24, metadata=_doc(
        "How often a stored key's scope is tested again; a key that gained trade, transfer or withdraw "
        "permission raises an alert and stops being used.", min=1, max=720))


@dataclass(frozen=True)
class AuthSettings:
    jwt_ttl_hours: int = field(default=24, metadata=_doc(
        "Lifetime of API access tokens (POST /api/v1/auth/token). Never longer than 24.", min=1, max=24))
    jwt_issuer: str = field(default="vigatra", metadata=_doc("`iss` claim of access tokens."))
    jwt_audience: str = field(default="vigatra-api", metadata=_doc("`aud` claim of access tokens."))
    password_min_length: int = field(default=15, metadata=_doc(
        "Minimum password length (NIST SP 800-63B: 15 for single-factor; 8 allowed when mfa_required).",
        min=8, max=64))
    mfa_required: bool = field(default=False, metadata=_doc(
        "Every user must enrol a TOTP second factor before using the appliance."))
    argon2_memory_kib: int = field(default=65536, metadata=_doc(
        "argon2id memory cost in KiB (>= 19456).", min=19456, max=4194304))
    argon2_time_cost: int = field(default=3, metadata=_doc("argon2id iterations (>= 2).", min=2, max=20))
    argon2_parallelism: int = field(default=4, metadata=_doc("argon2id lanes.", min=1, max=16))
    lockout_threshold: int = field(default=5, metadata=_doc(
        "Consecutive failed logins for one account before it is locked for a while.", min=1, max=50))
    lockout_minutes: int = field(default=15, metadata=_doc(
        "How long an account stays locked (doubles on repeat, capped at 24 h); an admin can clear it.",
        min=1, max=1440))
    ip_failures_per_window: int = field(default=20, metadata=_doc(
        "Failed logins from one IP address per 10 minutes before that address is throttled.", min=1, max=1000))
    session_idle_minutes: int = field(default=30, metadata=_doc(
        "Browser session idle timeout.", min=1, max=1440))
    session_absolute_hours: int = field(default=12, metadata=_doc(
        "Browser session absolute lifetime.", min=1, max=168))
    revocation_poll_seconds: float = field(default=1.0, metadata=_doc(
        "How often each process checks for revocations made by another process.", min=0.1, max=10))


@dataclass(frozen=True)
class OnboardingSettings:
    link_ttl_days: int = field(default=7, metadata=_doc("Onboarding links expire after this many days.",
                                                        min=1, max=90))
    failed_lookups_per_window: int = field(default=20, metadata=_doc(
        "Unknown or expired onboarding links tried from one IP per 10 minutes before it is throttled.",
        min=1, max=1000))
    smtp_host: str = field(default="", metadata=_doc(
        "Optional SMTP relay for e-mailing links. Empty: links are handed out by the admin (air-gapped sites)."))
    smtp_port: int = field(default=25, metadata=_doc("SMTP relay port.", min=1, max=65535))
    smtp_starttls: bool = field(default=True, metadata=_doc("Use STARTTLS with the relay."))
    smtp_from: str = field(default="", metadata=_doc("Sender address of onboarding e-mails."))


@dataclass(frozen=True)
class AuditSettings:
    retention_days: int = field(default=2190, metadata=_doc(
        "Audit events are kept at least this long (6 years: SEC 17a-4); only `vigatra audit purge` removes "
        "older ones.", min=365, max=36500))
    checkpoint_minutes: int = field(default=60, metadata=_doc(
        "A signed checkpoint of the audit chain is written at least this often, empty periods included; new "
        "events are signed within 5 minutes of arriving, and at every clean shutdown.",
        min=1, max=1440))


@dataclass(frozen=True)
class BackupSettings:
    dest: str = field(default="", metadata=_doc(
        "Directory the scheduled backup writes to (outside data_dir; the service must be allowed to write "
        "there: /var/backups/vigatra is, in the shipped unit). Empty: no scheduled backup."))
    interval_hours: int = field(default=24, metadata=_doc(
        "Hours between scheduled backups.", min=1, max=720))
    retention_count: int = field(default=7, metadata=_doc(
        "Scheduled backups kept in backup.dest; older ones are deleted after a new one verified. Backups "
        "made by hand or by install.sh are not counted or deleted.", min=1, max=1000))


@dataclass(frozen=True)
class KeySettings:
    provider: Literal["file", "env", "systemd", "keyring", "pkcs11"] = field(default="file", metadata=_doc(
        "Where the key-encryption key (KEK) comes from. Strongest first: pkcs11 (HSM), systemd "
        "(LoadCredentialEncrypted=), file (outside data_dir, mode 0400), env, keyring."))
    file_path: Path = field(default=Path("/etc/vigatra/kek.key"), metadata=_doc(
        "file provider: the KEK file (base64 of 32 random bytes). Must be outside data_dir and not "
        "readable by group or others."))
    env_var: str = field(default="VIGATRA_KEK", metadata=_doc(
        "env provider: the environment variable holding the base64 KEK."))
    systemd_credential: str = field(default="vigatra-kek", metadata=_doc(
        "systemd provider: credential name, read from $CREDENTIALS_DIRECTORY/<name>."))
    keyring_service: str = field(default="vigatra", metadata=_doc("keyring provider: service name."))
    keyring_username: str = field(default="kek", metadata=_doc("keyring provider: entry name."))
    pkcs11_module: Path = field(default=Path("/usr/lib/softhsm/libsofthsm2.so"), metadata=_doc(
        "pkcs11 provider: the vendor's PKCS#11 library."))
    pkcs11_token_label: str = field(default="vigatra", metadata=_doc("pkcs11 provider: token label."))
    pkcs11_key_label: str = field(default="vigatra-kek", metadata=_doc(
        "pkcs11 provider: label of the non-extractable AES key that wraps the data keys."))
    pkcs11_pin_file: Path | None = field(default=None, metadata=_doc(
        "pkcs11 provider: file holding the user PIN (mode 0400). Empty: systemd credential 'vigatra-pkcs11-pin'."))
    rotation_batch_size: int = field(default=500, metadata=_doc(
        "`vigatra keys rotate`: secrets re-sealed per transaction.", min=1, max=100000))


@dataclass(frozen=True)
class EgressSettings:
    proxy: str = field(default="", metadata=_doc(
        "HTTP(S) proxy every outbound venue request goes through (e.g. http://proxy.corp:3128). Empty: direct."))
    timeout_seconds: int = field(default=20, metadata=_doc("Timeout of one outbound request.", min=1, max=300))
    user_agent: str = field(default="Mozilla/5.0 (compatible)", metadata=_doc(
        "User-Agent sent to venues. Neutral on purpose: nothing identifies the firm or the employee."))
    egress_ip: str = field(default="", metadata=_doc(
        "The public IP venues see; shown to employees as the IP allow-list hint while they create a key."))


@dataclass(frozen=True)
class VenueSettings:
    enabled: bool = field(default=True, metadata=_doc("Offer this venue at onboarding and poll it."))
    base_url: str = field(default="", metadata=_doc(
        "Replaces scheme and host of every endpoint of this venue (egress gateway, or the simulators). "
        "Empty: the venue's production URL."))
    requests_per_second: float = field(default=5.0, metadata=_doc(
        "Shared request budget for all accounts of this venue (venues limit per egress IP).", min=0.1, max=1000))
    poll_interval_minutes: int = field(default=0, metadata=_doc(
        "Time between polls of this venue's connections (0: poller.interval_minutes).", min=0, max=1440))
    unverified_policy: Literal["reject", "accept_unverified"] = field(default="reject", metadata=_doc(
        "Venues whose key scope cannot be probed: reject the key, or store it marked unverified."))


@dataclass(frozen=True)
class EvmChainSettings:
    enabled: bool = field(default=True, metadata=_doc("Poll wallets on this chain."))
    rpc_url: str = field(default="", metadata=_doc(
        "JSON-RPC endpoint (your own node or a provider), e.g. https://eth.example.net or http://10.0.0.5:8545."))
    chain_id: int = field(default=1, metadata=_doc(
        "Expected eth_chainId; a node answering another chain is refused.", min=1, max=2**53))
    native_symbol: str = field(default="ETH", metadata=_doc("Symbol of the chain's native coin."))
    confirmations: int = field(default=12, metadata=_doc(
        "Blocks behind the tip before a transfer is recorded as final.", min=0, max=10000))
    max_block_range: int = field(default=2000, metadata=_doc(
        "Largest eth_getLogs block range to ask for (shrunk automatically when the node refuses).",
        min=1, max=1000000))
    start_block: int = field(default=0, metadata=_doc(
        "First block scanned for a new wallet's transfers (0: genesis).", min=0, max=2**53))
    tokens: tuple[str, ...] = field(default=(), metadata=_doc(
        "ERC-20 contract addresses whose balances are read (decimals and symbols are read from the contract)."))
    requests_per_second: float = field(default=10.0, metadata=_doc(
        "Request budget for this endpoint.", min=0.1, max=1000))


@dataclass(frozen=True)
class BitcoinSettings:
    enabled: bool = field(default=False, metadata=_doc("Poll Bitcoin addresses and extended public keys."))
    esplora_url: str = field(default="", metadata=_doc(
        "Esplora-compatible REST API base (self-hosted esplora/electrs or mempool), e.g. https://esplora.example/api"))
    network: Literal["mainnet", "testnet", "signet", "regtest"] = field(default="mainnet", metadata=_doc(
        "Addresses of other networks are refused at onboarding."))
    gap_limit: int = field(default=20, metadata=_doc(
        "xpub/ypub/zpub discovery stops after this many consecutive unused addresses.", min=1, max=1000))
    requests_per_second: float = field(default=5.0, metadata=_doc("Request budget for the Esplora API.",
                                                                   min=0.1, max=1000))


@dataclass(frozen=True)
class ChainSettings:
    evm: dict[str, EvmChainSettings] = field(default_factory=dict, metadata=_doc(
        "EVM chains keyed by a short name (ethereum, polygon, arbitrum, base, optimism...)."))
    bitcoin: BitcoinSettings = field(default_factory=BitcoinSettings, metadata=_doc("Bitcoin."))


@dataclass(frozen=True)
class AssetPricingSettings:
    venues: tuple[str, ...] = field(default=(), metadata=_doc(
        "Where this asset's prices come from, in order (exchange ids and `import`); empty: valuation.venues."))


@dataclass(frozen=True)
class ValuationSettings:
    enabled: bool = field(default=True, metadata=_doc(
        "Value balances, transactions and prediction positions in valuation.currency (a pricing job after the "
        "syncs; values appear when ready). Off: values are shown as unpriced, and no price is ever fetched."))
    currency: str = field(default="USD", metadata=_doc(
        "The firm's base currency every value is stated in (USD, EUR, GBP, CHF, JPY...)."))
    venues: tuple[str, ...] = field(default=(
        "kraken", "coinbase", "bitstamp", "gemini", "binanceus", "binance", "okx", "bybit", "kucoin",
        PRICE_IMPORT_SOURCE), metadata=_doc(
        "Where prices come from, in order: the exchanges' public market data (tickers for current values, candles "
        "for a transaction's time) and `import` (prices loaded with `vigatra prices import`). The first source that "
        "lists a pair and answers wins. Air-gapped sites: [import]. A disabled venue is skipped."))
    assets: dict[str, AssetPricingSettings] = field(default_factory=dict, metadata=_doc(
        "Per-asset order of price sources, keyed by asset code, overriding valuation.venues for that asset."))
    cross_via: tuple[str, ...] = field(default=("USDT", "USDC", "BTC"), metadata=_doc(
        "When no source lists an asset against the base currency, its price is crossed through these assets, in "
        "order (asset/USDT x USDT/USD); the route is recorded with the value. Stablecoins are priced like any "
        "other asset, never assumed to be worth 1."))
    candle_timeframe: Literal["1m", "5m", "15m", "30m", "1h", "1d"] = field(default="1h", metadata=_doc(
        "Candles a transaction is priced from: the close of the candle that contains its time. Finer candles cost "
        "more requests per day of history (they are fetched and cached per day)."))
    interval_minutes: int = field(default=5, metadata=_doc(
        "How often the pricing job runs inside `vigatra serve` (after the syncs, never holding them up).",
        min=1, max=1440))
    ticker_max_age_minutes: int = field(default=15, metadata=_doc(
        "A current price fetched less than this long ago is reused instead of asked again.", min=1, max=1440))
    stale_after_hours: int = field(default=48, metadata=_doc(
        "A current price older than this (the venue unreachable since, or the last import) is not used: the "
        "holding is shown unpriced, with the reason.", min=1, max=8760))
    import_max_gap_hours: int = field(default=24, metadata=_doc(
        "An imported price stands for the time it names and up to this long after (e.g. a daily fixing).",
        min=1, max=8760))
    retention_days: int = field(default=400, metadata=_doc(
        "Stored price observations (fetched or imported) are deleted this many days after they were stored; the "
        "values already computed from them stay, with their source.", min=1, max=36500))
    transactions_per_run: int = field(default=20000, metadata=_doc(
        "Transactions one pricing run values at most (the rest at the next run).", min=100, max=10_000_000))


@dataclass(frozen=True)
class DisplaySettings:
    time_zone: str = field(default="UTC", metadata=_doc(
        "The firm's time zone (an IANA name such as Europe/London or America/New_York): every page shows times "
        "in it, with the UTC time on hover; exports and the API keep UTC."))


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
    backup: BackupSettings = field(default_factory=BackupSettings, metadata=_doc(
        "Scheduled encrypted backups (`vigatra backup create` makes one by hand)."))
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
    # Where the settings came from, for messages and `vigatra doctor`; not a configuration key.
    source: str = field(default="defaults", metadata={"internal": True})

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.data_dir / 'vigatra.db'}"

    def venue(self, venue_id: str) -> VenueSettings:
        return self.venues.get(venue_id) or VenueSettings()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


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
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"configuration file {config_path} is not valid YAML{where}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration file {config_path} must hold a mapping of keys, not {type(raw).__name__}")
    return settings_from_mapping(raw, env=env, source=str(config_path))


def settings_from_mapping(raw: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
                          source: str = "<mapping>") -> Settings:
    env = {} if env is None else env
    values = _build(Settings, dict(raw), (), env, source)
    values["source"] = source
    settings = Settings(**values)
    _cross_check(settings, source)
    return settings


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
        if sub is not None and not isinstance(sub, dict):
            raise _bad((*path, key), source, "expected a mapping of keys")
        out[key] = item_type(**_build(item_type, dict(sub or {}), (*path, key), env, source))
    return out


def _bad(path: tuple[str, ...], source: str, why: str) -> ConfigError:
    return ConfigError(f"configuration key '{'.'.join(path)}' in {source}: {why}")


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


def _cross_check(settings: Settings, source: str) -> None:
    for proxy in settings.server.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise _bad(("server", "trusted_proxies"), source,
                       f"{proxy!r} is not an IP address or network") from None
    public = settings.server.public_url
    if public and not public.startswith(("https://", "http://127.", "http://localhost")):
        raise _bad(("server", "public_url"), source, "must be an https:// URL")
    for name, chain in settings.chains.evm.items():
        if chain.enabled and not chain.rpc_url.startswith(("https://", "http://")):
            raise _bad(("chains", "evm", name, "rpc_url"), source, "an enabled chain needs an http(s):// rpc_url")
    bitcoin = settings.chains.bitcoin
    if bitcoin.enabled and not bitcoin.esplora_url.startswith(("https://", "http://")):
        raise _bad(("chains", "bitcoin", "esplora_url"), source, "enabled Bitcoin needs an http(s):// esplora_url")
    url = settings.database.url
    if url and not url.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
        raise _bad(("database", "url"), source, "must start with sqlite:/// or postgresql+psycopg://")
    if settings.auth.password_min_length < 15 and not settings.auth.mfa_required:
        raise _bad(("auth", "password_min_length"), source,
                   "must be at least 15 unless auth.mfa_required is true (NIST SP 800-63B)")
    backup_dest = settings.backup.dest
    if backup_dest and not Path(backup_dest).is_absolute():
        raise _bad(("backup", "dest"), source, f"must be an absolute path, got {backup_dest!r}")
    if not settings.data_dir.is_absolute():
        raise _bad(("data_dir",), source, f"must be an absolute path, got {str(settings.data_dir)!r}")
    _check_valuation(settings.valuation, source)
    _check_time_zone(settings.display.time_zone, source)


def _check_time_zone(name: str, source: str) -> None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _bad(("display", "time_zone"), source,
                   f"{name!r} is not a time zone this machine knows (an IANA name such as Europe/London; the "
                   "tzdata package provides them)") from None


def _check_valuation(valuation: ValuationSettings, source: str) -> None:
    if not ASSET_CODE.match(valuation.currency) or len(valuation.currency) > 16:
        raise _bad(("valuation", "currency"), source,
                   f"must be a currency code such as USD, EUR or GBP, got {valuation.currency!r}")
    sources = (*EXCHANGE_IDS, PRICE_IMPORT_SOURCE)
    orders: list[tuple[tuple[str, ...], tuple[str, ...]]] = [(("valuation", "venues"), valuation.venues)]
    orders += [(("valuation", "assets", asset, "venues"), item.venues) for asset, item in valuation.assets.items()]
    for path, order in orders:
        for venue in order:
            if venue not in sources:
                raise _bad(path, source, f"{venue!r} is not a price source (known: {', '.join(sources)})")
        if len(set(order)) != len(order):
            raise _bad(path, source, "lists a source twice")
    for asset in valuation.cross_via:
        if not ASSET_CODE.match(asset):
            raise _bad(("valuation", "cross_via"), source, f"{asset!r} is not an asset code (upper case, e.g. USDT)")


# ---------------------------------------------------------------------------------------------
# Documentation: config/vigatra.example.yaml is generated from the schema and checked by a test.


def describe(cls: type = Settings, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, str]]:
    """Every configuration key as (path, default, doc), in schema order.

    Free-form maps (chains.evm) are described with the placeholder key ``<name>``.
    """
    rows: list[tuple[tuple[str, ...], Any, str]] = []
    hints = typing.get_type_hints(cls)
    for f in _fields(cls):
        path = (*prefix, f.name)
        tp: Any = hints[f.name]
        factory: Any = f.default_factory
        default = f.default if f.default is not dataclasses.MISSING else factory()
        if dataclasses.is_dataclass(tp):
            sub: Any = tp
            rows.append((path, None, f.metadata.get("doc", "")))
            rows.extend(describe(sub, path))
        elif get_origin(tp) is dict:
            rows.append((path, None, f.metadata.get("doc", "")))
            item_type = get_args(tp)[1]
            for key in (VENUE_IDS if path == ("venues",) else ("<name>",)):
                rows.append(((*path, key), None, ""))
                rows.extend(describe(item_type, (*path, key)))
        else:
            rows.append((path, default, f.metadata.get("doc", "")))
    return rows


def example_yaml() -> str:
    lines = [
        "# Vigatra configuration. Every key is optional; the value shown is the default.",
        "# Each key can be overridden by an environment variable named after its path,",
        "# e.g. database.url -> VIGATRA_DATABASE_URL, server.port -> VIGATRA_SERVER_PORT.",
        "# Secrets never go in this file: only references to where the key provider finds them.",
        "",
    ]
    for path, default, doc in describe():
        indent = "  " * (len(path) - 1)
        # A free-form map's entries are an example to copy (e.g. `ethereum:` for <name>), so commented out.
        example = "<name>" in path
        key = MAP_KEYS[path[:-1]][2] if path[-1] == "<name>" else path[-1]
        mark = "# " if example else ""
        if doc:
            lines.append(f"{indent}# {doc}")
        if default is None:
            lines.append(f"{indent}{mark}{key}:")
        else:
            lines.append(f"{indent}{mark}{key}: {_yaml_scalar(default)}")
    return "\n".join(lines) + "\n"


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, tuple):
        value = list(value)
    dumped = yaml.safe_dump(value, default_flow_style=True).strip()
    return dumped.removesuffix("\n...").removesuffix("...").strip()
