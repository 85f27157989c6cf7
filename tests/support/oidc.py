"""A real OpenID provider on loopback for the tests: panva's ``oidc-provider`` (npm, OpenID Certified, in
.tools/ by packaging/dev/install-test-tools.sh), run by Node with tests/support/oidc_provider.mjs.

Chosen because it is the reference Node implementation, certified for the Basic and Config OP profiles,
kept up to date, installable from npm and fully offline, and small enough to start per test session; its
development login form stands in for the firm's login page (any password for a known login).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from tests.support.proc import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
CLIENT_ID = "vigatra-test"
CLIENT_SECRET = "oidc-client-secret-for-tests-only-0123456789"
OTHER_CLIENT_ID = "another-app"
OTHER_CLIENT_SECRET = "another-apps-secret-for-tests-0123456789"

# login: claims (groups are the values directory.role_map is keyed with)
ACCOUNTS: dict[str, dict[str, Any]] = {
    "olga": {"preferred_username": "olga", "email": "olga@example.org", "name": "Olga Oversight",
             "groups": ["vigatra-compliance", "staff"], "employee_number": "E2001"},
    "ian": {"preferred_username": "ian", "email": "ian@example.org", "name": "Ian Itadmin",
            "groups": ["vigatra-admins"]},
    "nils": {"preferred_username": "nils", "email": "nils@example.org", "name": "Nils Nogroup", "groups": ["staff"]},
}


def find_node() -> str | None:
    return shutil.which("node")


def provider_installed() -> bool:
    return (ROOT / ".tools" / "node_modules" / "oidc-provider" / "package.json").exists()


@dataclass
class OpenIdProvider:
    issuer: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_provider(redirect_uris: list[str], log_dir: Path) -> OpenIdProvider:
    node = find_node()
    assert node is not None and provider_installed(), \
        "node or oidc-provider is missing: `make test` installs them (packaging/dev/install-test-tools.sh)"
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    key = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    jwk = key.as_dict(private=True)
    jwk.update({"use": "sig", "alg": "RS256", "kid": "test-" + secrets.token_hex(4)})
    clients = [
        {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": redirect_uris,
         "grant_types": ["authorization_code"], "response_types": ["code"],
         "token_endpoint_auth_method": "client_secret_basic"},
        {"client_id": OTHER_CLIENT_ID, "client_secret": OTHER_CLIENT_SECRET, "redirect_uris": redirect_uris,
         "grant_types": ["authorization_code"], "response_types": ["code"],
         "token_endpoint_auth_method": "client_secret_basic"},
    ]
    config = {"issuer": issuer, "port": port, "clients": clients, "accounts": ACCOUNTS,
              "cookie_key": secrets.token_hex(16), "jwks": {"keys": [jwk]}}
    module = ROOT / ".tools" / "node_modules" / "oidc-provider" / "lib" / "index.js"
    env = {**os.environ, "OP_CONFIG": json.dumps(config), "OIDC_PROVIDER_MODULE": module.as_uri()}
    log = log_dir / "oidc-provider.log"
    process = subprocess.Popen([node, str(SCRIPT)], stdout=subprocess.PIPE, stderr=log.open("wb"), env=env,
                               cwd=str(log_dir))
    deadline = time.time() + 30
    assert process.stdout is not None
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"oidc-provider exited: {log.read_text(errors='replace')[-2000:]}")
        line = process.stdout.readline()
        if line.strip() == b"ready":
            return OpenIdProvider(issuer, process)
    process.kill()
    raise AssertionError("oidc-provider did not start")
