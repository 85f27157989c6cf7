"""The firm's directory: LDAP / Active Directory (ldap.py, on ldap3) and OpenID Connect (oidc.py, on Authlib).

These modules speak the protocols and return plain dataclasses; they never touch the store. The rules
(which groups give which roles, who is disabled, what a sign-in creates) are in services/directory.
"""

from __future__ import annotations

from appliance.errors import Unavailable, VigatraError


class DirectoryUnavailable(Unavailable):
    """The directory or the identity provider cannot be used right now (unreachable, TLS refused, the
    service account refused, a bad answer). The message says which, in plain words, and never a secret."""

    code = "directory_unavailable"


class DirectoryRefused(VigatraError):
    """The directory said no to this person (wrong password, unknown, disabled, an ID token that fails a
    check). The reason is for logs and the audit trail; the person sees the generic sign-in failure."""

    http_status = 401
    code = "unauthenticated"


__all__ = ["DirectoryRefused", "DirectoryUnavailable"]
