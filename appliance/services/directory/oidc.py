"""OpenID Connect sign-in: the authorization code flow with PKCE, on Authlib and joserfc.

Authlib builds the authorization request (state, nonce, the S256 code challenge of a fresh verifier), makes
the token request with the client's authentication, and checks the ID token's claims (CodeIDToken: iss,
aud, exp, iat, nonce, azp, at_hash); joserfc checks its signature against the provider's JWKS. Nothing of
the protocol is hand-written here: this module only wires them to the egress layer and to our rules.

Every request (discovery, JWKS, token) goes through the egress layer to the one host of
``directory.oidc.issuer``; a discovery document naming endpoints on another host is refused. The ID token
must be signed with an asymmetric algorithm the provider announces (never ``none``, never HS*).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client.oauth2_session import OAuth2ClientAuth
from authlib.oauth2.client import OAuth2Client
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from appliance.auth.directory import DirectoryRefused, DirectoryUnavailable
from appliance.errors import VigatraError
from appliance.settings import Settings
from appliance.venues.egress import Egress, VenueSession, read

log = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
METADATA_TTL_SECONDS = 600
LEEWAY_SECONDS = 60


class _EgressClient(OAuth2Client):
    """Authlib's OAuth 2.0 client over our egress session (requests-compatible client authentication)."""

    client_auth_class = OAuth2ClientAuth


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    state: str
    nonce: str
    code_verifier: str


def callback_url(settings: Settings) -> str:
    return settings.server.public_url.rstrip("/") + "/login/oidc/callback"


class OidcProvider:
    """The configured provider. Discovery metadata is cached for METADATA_TTL_SECONDS per process."""

    _cache: dict[str, tuple[float, dict[str, Any]]] = {}
    _lock = threading.Lock()

    def __init__(self, settings: Settings, client_secret: str | None, egress: Egress) -> None:
        self.settings = settings
        self.oidc = settings.directory.oidc
        self.issuer = self.oidc.issuer.strip()
        parts = urlsplit(self.issuer)
        self.host = parts.hostname or ""
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._secret = client_secret
        self.egress = egress

    def __repr__(self) -> str:
        return f"<OidcProvider {self.issuer}>"

    def _session(self, *paths: tuple[str, str]) -> VenueSession:
        rules = [rule for method, path in paths for rule in read(method, re.escape(path))]
        return self.egress.identity_provider_session(
            self.host, rules, ca_file=str(self.oidc.ca_file) if self.oidc.ca_file else None,
            use_proxy=self.oidc.use_egress_proxy)

    def _get_json(self, url: str) -> dict[str, Any]:
        session = self._session(("GET", urlsplit(url).path))
        try:
            response = session.get(url, timeout=self.oidc.timeout_seconds)
        except VigatraError as exc:
            raise DirectoryUnavailable(f"the OpenID provider {self.host} cannot be used: {exc.message}") from None
        except requests.RequestException as exc:
            raise DirectoryUnavailable(f"cannot reach the OpenID provider at {self.origin} "
                                       f"({type(exc).__name__})") from None
        finally:
            session.close()
        if response.status_code != 200:
            raise DirectoryUnavailable(f"the OpenID provider answered HTTP {response.status_code} for {url}")
        try:
            body = response.json()
        except ValueError:
            raise DirectoryUnavailable(f"the OpenID provider's {url} is not JSON") from None
        if not isinstance(body, dict):
            raise DirectoryUnavailable(f"the OpenID provider's {url} is not a JSON object")
        return body

    def metadata(self) -> dict[str, Any]:
        """The discovery document, checked: the same issuer, every endpoint on the issuer's host, code + S256."""
        with self._lock:
            cached = self._cache.get(self.issuer)
        if cached is not None and time.monotonic() - cached[0] < METADATA_TTL_SECONDS:
            return cached[1]
        doc = self._get_json(self.issuer.rstrip("/") + DISCOVERY_PATH)
        if doc.get("issuer") != self.issuer:
            raise DirectoryUnavailable(f"the discovery document names the issuer {str(doc.get('issuer'))[:200]!r}, "
                                       f"not {self.issuer!r}: set directory.oidc.issuer to the provider's own value")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(key)
            if not isinstance(value, str) or not value:
                raise DirectoryUnavailable(f"the discovery document has no {key}")
            parts = urlsplit(value)
            if f"{parts.scheme}://{parts.netloc}" != self.origin:
                raise DirectoryUnavailable(f"the discovery document's {key} is on {parts.netloc}, not on the "
                                           f"issuer's host {urlsplit(self.issuer).netloc}: refused (egress goes to one "
                                           "host only)")
        methods = doc.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise DirectoryUnavailable("the provider does not support PKCE with S256")
        with self._lock:
            self._cache[self.issuer] = (time.monotonic(), doc)
        return doc

    def _client(self, session: Any) -> _EgressClient:
        auth = self.oidc.client_auth
        return _EgressClient(session=session, client_id=self.oidc.client_id,
                             client_secret=None if auth == "none" else self._secret,
                             token_endpoint_auth_method=auth, code_challenge_method="S256",
                             redirect_uri=callback_url(self.settings), scope=" ".join(self.scopes()))

    def scopes(self) -> list[str]:
        scopes = list(self.oidc.scopes)
        return scopes if "openid" in scopes else ["openid", *scopes]

    def authorization(self) -> AuthorizationRequest:
        """Where to send the browser, with the state, nonce and PKCE verifier to keep until the callback."""
        doc = self.metadata()
        verifier, nonce = generate_token(64), generate_token(32)
        url, state = self._client(None).create_authorization_url(doc["authorization_endpoint"],
                                                                 code_verifier=verifier, nonce=nonce)
        return AuthorizationRequest(url, state, nonce, verifier)

    def finish(self, *, code: str, code_verifier: str, nonce: str) -> dict[str, Any]:
        """Exchange the code, then check the ID token: signature from the JWKS, then iss, aud, exp, iat, nonce,
        azp, at_hash. Returns its claims; DirectoryRefused when a check fails."""
        doc = self.metadata()
        session = self._session(("POST", urlsplit(doc["token_endpoint"]).path))
        try:
            token = self._client(session).fetch_token(doc["token_endpoint"], code=code,
                                                      code_verifier=code_verifier,
                                                      timeout=self.oidc.timeout_seconds)
        except OAuth2Error as exc:
            raise DirectoryRefused(f"the provider refused the code ({exc.error})") from None
        except VigatraError as exc:
            raise DirectoryUnavailable(f"the OpenID provider {self.host} cannot be used: {exc.message}") from None
        except requests.RequestException as exc:
            raise DirectoryUnavailable(f"cannot reach the OpenID provider's token endpoint "
                                       f"({type(exc).__name__})") from None
        finally:
            session.close()
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise DirectoryRefused("the provider returned no ID token")
        return self.verify_id_token(id_token, nonce=nonce, access_token=token.get("access_token"))

    def verify_id_token(self, id_token: str, *, nonce: str, access_token: str | None = None) -> dict[str, Any]:
        doc = self.metadata()
        announced = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [a for a in announced if a in SIGNING_ALGORITHMS]
        if not algorithms:
            raise DirectoryUnavailable("the provider announces no asymmetric ID token signing algorithm")
        keys = KeySet.import_key_set(self._get_json(doc["jwks_uri"]))  # type: ignore[arg-type]
        try:
            decoded = jwt.decode(id_token, keys, algorithms=algorithms)
        except (JoseError, ValueError) as exc:
            raise DirectoryRefused(f"the ID token's signature does not verify ({type(exc).__name__})") from None
        claims = CodeIDToken(decoded.claims, decoded.header,
                             options={"iss": {"essential": True, "value": self.issuer},
                                      "aud": {"essential": True, "value": self.oidc.client_id},
                                      "nonce": {"essential": True}},
                             params={"nonce": nonce, "client_id": self.oidc.client_id, "access_token": access_token})
        try:
            claims.validate(leeway=LEEWAY_SECONDS)
        except JoseError as exc:
            raise DirectoryRefused(f"the ID token failed a check: {exc.error} {exc.description or ''}"[:300]) from None
        return dict(claims)


__all__ = ["AuthorizationRequest", "OidcProvider", "callback_url"]
