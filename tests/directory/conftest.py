"""A real OpenLDAP server (slapd) per test session, and appliances configured to sign in against it."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import oidc as op
from tests.support import slapd as seed
from tests.support.app import TestAppliance, build
from tests.support.slapd import Slapd, start_slapd

ROLE_MAP = {
    seed.ADMINS: ["Admin"],
    seed.COMPLIANCE: ["Compliance"],
    seed.VIEWERS: ["Viewer"],
}


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = start_slapd(tmp_path_factory.mktemp("slapd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ldap_secret() -> Iterator[str]:
    """The service account's password, held by the (env) key provider under a fresh name."""
    name = f"ldap-bind-{secrets.token_hex(3)}"
    variable = "VIGATRA_SECRET_" + name.upper().replace("-", "_")
    os.environ[variable] = seed.SERVICE_PASSWORD
    try:
        yield name
    finally:
        os.environ.pop(variable, None)


def ldap_overrides(server: Slapd, secret: str, *, url: str | None = None, **ldap: Any) -> dict[str, Any]:
    return {"directory": {
        "ldap": {"enabled": True, "url": url or server.ldaps_url, "ca_file": str(server.ca.cert_path),
                 "server_type": "openldap", "bind_dn": seed.SERVICE_DN, "bind_password_secret": secret,
                 "user_base": seed.PEOPLE, "group_base": seed.GROUPS, "ask_totp": False, **ldap},
        "role_map": ROLE_MAP}}


@pytest.fixture
def dta(db_url: str, tmp_path: Path, slapd: Slapd, ldap_secret: str) -> Iterator[Any]:
    """A test appliance (personas alice, carol, victor, nora are local accounts) signing in against slapd."""
    built = build(db_url, tmp_path / "data", **ldap_overrides(slapd, ldap_secret))
    try:
        yield built
    finally:
        built.appliance.close()


@pytest.fixture
def dclient(dta: Any) -> Any:
    """A test client over TLS from loopback, for the appliance that signs in against slapd."""
    from flask.testing import FlaskClient

    from appliance.app import create_app

    class HttpsClient(FlaskClient):
        def open(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("base_url", "https://localhost")
            return super().open(*args, **kwargs)

    flask_app = create_app(dta.appliance)
    flask_app.test_client_class = HttpsClient
    return flask_app.test_client()


# -- the OpenID provider (tests/support/oidc.py) ---------------------------------------------------------

SECRET_NAME = "oidc-client-secret-tests"
OIDC_ROLE_MAP = {"vigatra-compliance": ["Compliance"], "vigatra-admins": ["Admin"]}


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[op.OpenIdProvider]:
    running = op.start_provider(["https://localhost/login/oidc/callback"], tmp_path_factory.mktemp("op"))
    try:
        yield running
    finally:
        running.stop()


def oidc_overrides(issuer: str, public_url: str = "https://localhost", **oidc: Any) -> dict[str, Any]:
    return {"server": {"public_url": public_url},
            "directory": {"oidc": {"enabled": True, "issuer": issuer, "client_id": op.CLIENT_ID,
                                   "client_secret_name": SECRET_NAME, **oidc},
                          "role_map": OIDC_ROLE_MAP}}


@pytest.fixture
def ota_oidc(db_url: str, tmp_path: Path, provider: op.OpenIdProvider) -> Iterator[TestAppliance]:
    os.environ["VIGATRA_SECRET_" + SECRET_NAME.upper().replace("-", "_")] = op.CLIENT_SECRET
    built = build(db_url, tmp_path / "data", **oidc_overrides(provider.issuer))
    try:
        yield built
    finally:
        built.appliance.close()


@pytest.fixture
def oclient(ota_oidc: TestAppliance) -> Any:
    from flask.testing import FlaskClient

    from appliance.app import create_app

    class HttpsClient(FlaskClient):
        def open(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("base_url", "https://localhost")
            return super().open(*args, **kwargs)

    flask_app = create_app(ota_oidc.appliance)
    flask_app.test_client_class = HttpsClient
    return flask_app.test_client()
