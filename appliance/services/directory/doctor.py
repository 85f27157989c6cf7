"""`vigatra doctor`'s directory checks: the LDAP bind, a search, one group lookup, in plain words.

Read-only like every doctor check: the service account binds and searches; nothing is written.
"""

from __future__ import annotations

from appliance.auth.directory import DirectoryUnavailable
from appliance.errors import KeyProviderError
from appliance.services.doctor import OK, PROBLEM, WARNING, Finding
from appliance.settings import Settings


def check_ldap(settings: Settings) -> list[Finding]:
    ldap = settings.directory.ldap
    if not (ldap.enabled or settings.roster.ldap.enabled):
        return []
    from appliance.auth.directory.ldap import LdapDirectory, normalise_dn
    from appliance.crypto import provider_from_settings

    try:
        password = provider_from_settings(settings).secret(ldap.bind_password_secret)
    except KeyProviderError as exc:
        return [Finding("directory", PROBLEM, f"the service account's password is missing: {exc.message} (store it "
                                              f"under the key provider's secret {ldap.bind_password_secret!r})")]
    directory = LdapDirectory(ldap, password)
    out: list[Finding] = []
    try:
        with directory.service() as conn:
            out.append(Finding("directory bind", OK, f"{directory.describe()}: the service account {ldap.bind_dn} "
                                                     "signed in over TLS"))
            users = directory.count_users(conn)
            if users:
                out.append(Finding("directory search", OK, f"{users} account(s) under {ldap.user_base} match "
                                                           "the user filter"))
            else:
                out.append(Finding("directory search", WARNING, f"no account under {ldap.user_base} matches the "
                                                                "user filter: check directory.ldap.user_base and "
                                                                "user_filter"))
            groups = [g for g in settings.directory.role_map if "=" in g]
            group = settings.roster.ldap.group or (groups[0] if groups else "")
            if group:
                members = directory.check_group(conn, group)
                out.append(Finding("directory group", OK, f"{normalise_dn(group)} found with {members} direct "
                                                          "member(s)"))
            elif ldap.enabled:
                out.append(Finding("directory group", WARNING, "directory.role_map maps no LDAP group to a role: "
                                                               "no directory user can sign in"))
    except DirectoryUnavailable as exc:
        out.append(Finding("directory", PROBLEM, exc.message))
    return out


def check_oidc(settings: Settings) -> list[Finding]:
    """The provider's discovery document, read through the egress layer and checked like at sign-in."""
    oidc = settings.directory.oidc
    if not oidc.enabled:
        return []
    from appliance.services.directory.oidc import OidcProvider, callback_url
    from appliance.venues.egress import Egress

    out: list[Finding] = []
    secret = None
    if oidc.client_auth != "none":
        from appliance.crypto import provider_from_settings

        try:
            secret = provider_from_settings(settings).secret(oidc.client_secret_name)
        except KeyProviderError as exc:
            out.append(Finding("OIDC client secret", PROBLEM, f"{exc.message} (store the client secret under the key "
                                                              f"provider's secret {oidc.client_secret_name!r})"))
    try:
        doc = OidcProvider(settings, secret, Egress(settings)).metadata()
    except DirectoryUnavailable as exc:
        return [*out, Finding("OIDC discovery", PROBLEM, exc.message)]
    out.append(Finding("OIDC discovery", OK, f"{oidc.issuer} answers; authorization at "
                                             f"{doc['authorization_endpoint']}; register {callback_url(settings)} "
                                             "as this client's redirect URI"))
    return out


__all__ = ["check_ldap", "check_oidc"]
