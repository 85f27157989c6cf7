"""Configuration: typed, layered (defaults -> YAML -> VIGATRA_* env), strict, documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from appliance.errors import ConfigError
from appliance.settings import describe, env_name, example_yaml, load_settings, settings_from_mapping

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_and_env_override(tmp_path: Path) -> None:
    cfg = write(tmp_path / "v.yaml", "data_dir: /srv/vigatra\nserver:\n  port: 9000\n")
    settings = load_settings(cfg, env={"VIGATRA_SERVER_PORT": "9100", "VIGATRA_DATABASE_URL": "sqlite:////x/y.db"})
    assert settings.server.port == 9100
    assert settings.database_url == "sqlite:////x/y.db"
    assert str(settings.data_dir) == "/srv/vigatra"
    assert settings.server.host == "127.0.0.1"


def test_every_key_has_an_environment_variable(tmp_path: Path) -> None:
    cfg = write(tmp_path / "v.yaml", "{}\n")
    settings = load_settings(cfg, env={env_name(("poller", "tick_seconds")): "5",
                                       env_name(("venues", "kraken", "base_url")): "http://127.0.0.1:1/kraken",
                                       env_name(("server", "trusted_proxies")): "10.0.0.1, 10.0.0.0/8"})
    assert settings.poller.tick_seconds == 5
    assert settings.venue("kraken").base_url == "http://127.0.0.1:1/kraken"
    assert settings.server.trusted_proxies == ("10.0.0.1", "10.0.0.0/8")


@pytest.mark.parametrize(("text", "expected"), [
    ("server:\n  hots: 1\n", "unknown configuration key 'server.hots'"),
    ("bogus: 1\n", "unknown configuration key 'bogus'"),
    ("server:\n  port: abc\n", "configuration key 'server.port'"),
    ("server:\n  port: 70000\n", "must be between 1 and 65535"),
    ("logging:\n  level: LOUD\n", "must be one of DEBUG, INFO, WARNING, ERROR"),
    ("venues:\n  mtgox: {}\n", "unknown configuration key 'venues.mtgox'"),
    ("server: [1, 2]\n", "expected a mapping"),
    ("auth:\n  password_min_length: 8\n", "at least 15 unless auth.mfa_required"),
    ("data_dir: relative/path\n", "must be an absolute path"),
    (": : :\n", "not valid YAML"),
    ("- a list\n", "must hold a mapping"),
    ("venues:\n  kraken:\n    base_url: ftp://x\n", "'venues.kraken.base_url'"),
    ("venues:\n  kraken:\n    base_url: file:///etc/passwd\n", "must be an http:// or https:// URL with a host"),
    ("venues:\n  okx:\n    base_url: https://\n", "must be an http:// or https:// URL with a host"),
])
def test_bad_config_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    cfg = write(tmp_path / "v.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(cfg, env={})
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    if "YAML" not in expected and "mapping of keys" not in expected and "hold a mapping" not in expected:
        assert str(cfg) in message


@pytest.mark.parametrize(("text", "key", "line", "first"), [
    ("server:\n  port: 9000\npoller:\n  workers: 2\nserver:\n  threads: 4\n", "server", 5, 1),
    ("server:\n  port: 9000\n  host: 0.0.0.0\n  port: 9001\n", "port", 4, 2),
    ("venues:\n  kraken:\n    enabled: true\n    base_url: http://a\n    enabled: false\n", "enabled", 5, 3),
    ("chains:\n  evm:\n    ethereum: {chain_id: 1, chain_id: 2}\n", "chain_id", 3, 3),
])
def test_a_repeated_key_is_refused_with_the_key_and_its_line(tmp_path: Path, text: str, key: str, line: int,
                                                             first: int) -> None:
    """PyYAML keeps the last of two equal keys silently: a second `server:` section dropped the first."""
    cfg = write(tmp_path / "v.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(cfg, env={})
    assert str(caught.value) == (f"configuration file {cfg} repeats the key '{key}' at line {line} (first at line "
                                 f"{first}); a repeated key would silently replace the first one")


def test_merge_keys_still_override_on_purpose(tmp_path: Path) -> None:
    cfg = write(tmp_path / "v.yaml", "data_dir: /srv/v\nvenues:\n  kraken: &base {requests_per_second: 2}\n"
                                     "  okx:\n    <<: *base\n    requests_per_second: 3\n")
    assert load_settings(cfg, env={}).venue("okx").requests_per_second == 3


@pytest.mark.parametrize(("name", "closest"), [
    ("VIGATRA_SERVER_PROT", "VIGATRA_SERVER_PORT"),
    ("VIGATRA_DATABSE_URL", "VIGATRA_DATABASE_URL"),
    ("VIGATRA_VENUES_KRAKEN_BASEURL", "VIGATRA_VENUES_KRAKEN_BASE_URL"),
    ("VIGATRA_CONFIGG", "VIGATRA_CONFIG"),
    ("VIGATRA_CHAINS_EVM_POLYGON_RPC_URL", "VIGATRA_CHAINS_EVM_ETHEREUM_RPC_URL"),  # a chain the file does not name
])
def test_an_unknown_vigatra_variable_is_refused_naming_the_closest_key(tmp_path: Path, name: str,
                                                                       closest: str) -> None:
    cfg = write(tmp_path / "v.yaml", "chains:\n  evm:\n    ethereum:\n      rpc_url: https://eth.example\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(cfg, env={name: "1"})
    assert str(caught.value) == (f"unknown environment variable {name}: no configuration key is named so; "
                                 f"did you mean {closest}?")


def test_variables_that_are_not_configuration_keys_are_allowed(tmp_path: Path) -> None:
    """The configured KEK variable, a KEK variable for `keys rewrap --key-env`, the config path, the test
    harness's PostgreSQL URL, keys of chains the configuration names, and named secrets (VIGATRA_SECRET_*)."""
    cfg = write(tmp_path / "v.yaml", "keys:\n  provider: env\n  env_var: MY_APPLIANCE_SECRET\nchains:\n  evm:\n"
                                     "    ethereum:\n      rpc_url: https://eth.example\n")
    settings = load_settings(cfg, env={"VIGATRA_CONFIG": str(cfg), "VIGATRA_KEK": "x", "VIGATRA_NEXT_KEK": "y",
                                       "VIGATRA_TEST_KEK_AB12": "z", "VIGATRA_TEST_POSTGRES_URL": "postgresql://",
                                       "VIGATRA_CHAINS_EVM_ETHEREUM_CONFIRMATIONS": "3", "OTHER_THING": "1",
                                       "VIGATRA_SECRET_SMTP_PASSWORD": "a named secret of the env key provider"})
    assert settings.chains.evm["ethereum"].confirmations == 3
    cfg = write(tmp_path / "w.yaml", "keys:\n  provider: env\n  env_var: VIGATRA_MASTER\n")
    assert load_settings(cfg, env={"VIGATRA_MASTER": "x"}).keys.env_var == "VIGATRA_MASTER"


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    cfg = write(tmp_path / "v.yaml", "{}\n")
    with pytest.raises(ConfigError, match="environment variable VIGATRA_SERVER_THREADS"):
        load_settings(cfg, env={"VIGATRA_SERVER_THREADS": "many"})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_example_documents_every_key_with_its_default() -> None:
    shipped = (ROOT / "config" / "vigatra.example.yaml").read_text()
    assert shipped == example_yaml(), "config/vigatra.example.yaml is stale: regenerate it from the schema"
    parsed = yaml.safe_load(shipped)
    assert settings_from_mapping(parsed) == settings_from_mapping({}).__class__(**{
        **settings_from_mapping(parsed).__dict__}), "the example must load"
    for path, _default, doc in describe():
        leaf = path[-1]
        assert leaf in shipped or "<name>" in path
        if len(path) > 1 and path[-1] != "<name>" and not (len(path) == 2 and path[0] in ("venues",)):
            assert doc or path[0] == "venues", f"{'.'.join(path)} has no documentation"
