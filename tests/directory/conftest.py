"""A real OpenLDAP server (slapd) per test session, and appliances configured to sign in against it."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import slapd as seed
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
    from tests.support.app import build

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
