"""Directory sign-in and sync: LDAP / Active Directory (signin.py, sync.py), OpenID Connect (oidc.py), the
accounts they create and keep in step (accounts.py), and the break-glass rule (breakglass.py)."""
