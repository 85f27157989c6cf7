"""The settings schema: constants and the sections of the configuration (server to valuation)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from appliance.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/vigatra/vigatra.yaml")
ENV_PREFIX = "VIGATRA_"
# Environment variables with this prefix that are not configuration keys.
NON_CONFIG_ENV = frozenset({"VIGATRA_CONFIG", "VIGATRA_TEST_POSTGRES_URL", "VIGATRA_KEK"})
# Secrets the env key provider holds for other systems (VIGATRA_SECRET_SMTP_PASSWORD): not configuration keys.
SECRET_ENV_PREFIX = "VIGATRA_SECRET_"  # noqa: S105 (a variable name prefix, not a secret)

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
    # A group DN (LDAP) or a groups-claim value (OIDC): any printable text.
    ("directory", "role_map"): (re.compile(r"^[^\x00-\x1f\x7f]{1,500}$"),
                                "group names are 1-500 printable characters",
                                "cn=vigatra-admins,ou=groups,dc=example,dc=org"),
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
        "On SIGTERM, the most the process takes to exit: no new requests or polls are taken; in-flight "
        "requests and syncs may finish, and syncs still running after half of it stop at their next commit "
        "(nothing stored is lost; the rest resumes on the next poll). Keep it under the unit's TimeoutStopSec.",
        min=1, max=600))


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = field(default="", metadata=_doc(
        "SQLAlchemy URL. Empty: SQLite file vigatra.db in data_dir. PostgreSQL: postgresql+psycopg://user@host/db"))
    pool_size: int = field(default=0, metadata=_doc(
        "Connections each process keeps open. 0: one for every server thread, poll worker and background writer "
        "(server.threads + poller.workers + 4), so no request opens a connection. On PostgreSQL, set it when "
        "several processes must share max_connections.", min=0, max=200))
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
        "Consecutive transient failures before a degraded connection turns broken (rate limits never count).",
        min=1, max=1000))
    backoff_max_minutes: int = field(default=60, metadata=_doc(
        "Longest wait between retries of a failing connection (exponential backoff with jitter), and of a "
        "rate-limited one (the venue's Retry-After, doubling with each rate limit in a row).",
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


@dataclass(frozen=True)
class SmtpSettings:
    host: str = field(default="", metadata=_doc(
        "The customer's SMTP relay. Empty: no e-mail is sent (air-gapped sites hand out links themselves)."))
    port: int = field(default=25, metadata=_doc("SMTP relay port (587 for submission with STARTTLS).",
                                                min=1, max=65535))
    starttls: bool = field(default=True, metadata=_doc(
        "Upgrade the connection with STARTTLS and verify the relay's certificate; a relay that does not offer "
        "it is refused."))
    ca_file: Path | None = field(default=None, metadata=_doc(
        "CA bundle that signs the relay's certificate (PEM). Empty: the system's trusted CAs."))
    sender: str = field(default="", metadata=_doc("From: address of every e-mail (required when host is set)."))
    username: str = field(default="", metadata=_doc(
        "SMTP AUTH user name. Empty: no authentication. The password never goes in this file: the key "
        "provider holds it under password_secret."))
    password_secret: str = field(default="smtp-password", metadata=_doc(
        "Name under which the key provider holds the SMTP password: a systemd credential of that name, a "
        "file of that name (mode 0400) beside keys.file_path, the environment variable "
        "VIGATRA_SECRET_<NAME> (upper case, - as _), or a keyring entry."))
    timeout_seconds: int = field(default=20, metadata=_doc("Timeout of one SMTP conversation step.",
                                                           min=1, max=300))
    max_attempts: int = field(default=8, metadata=_doc(
        "Deliveries tried per e-mail (with growing pauses) before it is marked failed on the System page.",
        min=1, max=100))


@dataclass(frozen=True)
class NotificationSettings:
    compliance_mailbox: tuple[str, ...] = field(default=(), metadata=_doc(
        "Addresses told of every new critical alert and every assignment (besides the assignee)."))
    smtp: SmtpSettings = field(default_factory=SmtpSettings, metadata=_doc("The outgoing mail relay."))


@dataclass(frozen=True)
class AlertSettings:
    flag_window_days: int = field(default=30, metadata=_doc(
        "An employee stays flagged (visible to roles limited to flagged records) while an alert about them is "
        "open, and for this many days after it was closed.", min=0, max=3650))


@dataclass(frozen=True)
class RulesSettings:
    workers: int = field(default=0, metadata=_doc(
        "Processes that judge the whole history when a list, a rule or a group changes (more than 500 "
        "employees): 0 = one per CPU core (at most 4), 1 = only the process that made the change. The alerts "
        "are the same either way; workers only read, and the process that made the change writes.",
        min=0, max=32))


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
    requests_per_second: float = field(default=0.0, metadata=_doc(
        "0: the venue's documented request limits apply (per egress IP and per account, endpoint by endpoint; "
        "docs/VENUES-SOURCES.md). Above 0: one shared budget of this many requests a second for all accounts of "
        "this venue replaces them (an egress gateway with its own limits, the simulators).", min=0, max=1000))
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
    firm_name: str = field(default="", metadata=_doc(
        "The firm's name, printed at the head of every report and examination pack (empty: the appliance id)."))
    large_trade_value: str = field(default="10000", metadata=_doc(
        "Recent large trades (the firm-wide page and GET /api/v1/transactions/large) list buys and sells worth at "
        "least this much in valuation.currency, unless the reader asks for another amount."))


def _bad(path: tuple[str, ...], source: str, why: str) -> ConfigError:
    return ConfigError(f"configuration key '{'.'.join(path)}' in {source}: {why}")



