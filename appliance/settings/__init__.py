"""Typed, frozen settings and the one function that loads them.

Layers, lowest first: the defaults written here -> the YAML file (``--config`` or ``VIGATRA_CONFIG``,
read with a ``yaml.SafeLoader`` that refuses repeated keys) -> ``VIGATRA_*`` environment variables.
Every key of the schema has an environment variable named after its path (``database.url`` ->
``VIGATRA_DATABASE_URL``). Unknown keys, repeated keys, bad values and ``VIGATRA_*`` variables that set
no key stop start-up with one :class:`ConfigError` line naming the key and its source.
Secrets never live here, only references to where a key provider finds them.
"""


from __future__ import annotations

from appliance.settings.checks import (
    ADDRESS,
    ROLE_NAME,
    SECRET_NAME,
)
from appliance.settings.docs import (
    describe,
    example_yaml,
)
from appliance.settings.loader import (
    MOVED_KEYS,
    Settings,
    config_env_names,
    env_name,
    load_settings,
    resolve_config_path,
    settings_from_mapping,
)
from appliance.settings.people import (
    AttestationSettings,
    DirectorySettings,
    LdapSettings,
    OidcSettings,
    PortalSettings,
    PreclearanceSettings,
    RosterFileSettings,
    RosterLdapSettings,
    RosterSettings,
)
from appliance.settings.sections import (
    ASSET_CODE,
    CHAIN_KEY,
    DEFAULT_CONFIG_PATH,
    ENV_PREFIX,
    EXCHANGE_IDS,
    MAP_KEYS,
    NON_CONFIG_ENV,
    PRICE_IMPORT_SOURCE,
    SECRET_ENV_PREFIX,
    VENUE_IDS,
    AlertSettings,
    AssetPricingSettings,
    AuditSettings,
    AuthSettings,
    BackupSettings,
    BitcoinSettings,
    ChainSettings,
    DatabaseSettings,
    EgressSettings,
    EvmChainSettings,
    KeySettings,
    LoggingSettings,
    NotificationSettings,
    OnboardingSettings,
    PollerSettings,
    RulesSettings,
    ServerSettings,
    SmtpSettings,
    ValuationSettings,
    VenueSettings,
)

__all__ = [
    "ADDRESS",
    "ASSET_CODE",
    "CHAIN_KEY",
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "EXCHANGE_IDS",
    "MAP_KEYS",
    "MOVED_KEYS",
    "NON_CONFIG_ENV",
    "PRICE_IMPORT_SOURCE",
    "ROLE_NAME",
    "SECRET_ENV_PREFIX",
    "SECRET_NAME",
    "VENUE_IDS",
    "AlertSettings",
    "AssetPricingSettings",
    "AttestationSettings",
    "AuditSettings",
    "AuthSettings",
    "BackupSettings",
    "BitcoinSettings",
    "ChainSettings",
    "DatabaseSettings",
    "DirectorySettings",
    "EgressSettings",
    "EvmChainSettings",
    "KeySettings",
    "LdapSettings",
    "LoggingSettings",
    "NotificationSettings",
    "OidcSettings",
    "OnboardingSettings",
    "PollerSettings",
    "PortalSettings",
    "PreclearanceSettings",
    "RosterFileSettings",
    "RosterLdapSettings",
    "RosterSettings",
    "RulesSettings",
    "ServerSettings",
    "Settings",
    "SmtpSettings",
    "ValuationSettings",
    "VenueSettings",
    "config_env_names",
    "describe",
    "env_name",
    "example_yaml",
    "load_settings",
    "resolve_config_path",
    "settings_from_mapping",
]
