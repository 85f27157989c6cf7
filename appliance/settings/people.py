"""The settings schema: sections about people (directory sign-in, the roster, the employee portal, pre-clearance)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from appliance.settings.sections import (
    _doc,
)


@dataclass(frozen=True)
class LdapSettings:
    enabled: bool = field(default=False, metadata=_doc(
        "Dashboard users sign in with their directory (Active Directory or OpenLDAP) user name and password."))
    url: str = field(default="", metadata=_doc(
        "ldaps://dc1.corp.example:636, or ldap://dc1.corp.example:389 with starttls: true. Never plain LDAP."))
    starttls: bool = field(default=False, metadata=_doc(
        "With an ldap:// url: upgrade the connection with StartTLS before anything is sent (required then)."))
    ca_file: Path | None = field(default=None, metadata=_doc(
        "CA bundle (PEM) that signs the directory servers' certificates. Empty: the system's trusted CAs. "
        "The certificate and its host name are always checked."))
    server_type: Literal["active_directory", "openldap"] = field(default="active_directory", metadata=_doc(
        "active_directory: nested groups through LDAP_MATCHING_RULE_IN_CHAIN (1.2.840.113556.1.4.1941), "
        "disabled accounts from userAccountControl. openldap: nested groups resolved level by level, locked "
        "accounts from pwdAccountLockedTime (ppolicy)."))
    bind_dn: str = field(default="", metadata=_doc(
        "The service account the appliance searches with, e.g. cn=svc-vigatra,ou=service,dc=corp,dc=example."))
    bind_password_secret: str = field(default="ldap-bind-password", metadata=_doc(
        "Name under which the key provider holds the service account's password: a systemd credential of that "
        "name, a file of that name (mode 0400) beside keys.file_path, the environment variable "
        "VIGATRA_SECRET_<NAME> (upper case, - as _), or a keyring entry. Never the password itself."))
    user_base: str = field(default="", metadata=_doc("Where users are searched, e.g. ou=people,dc=corp,dc=example."))
    user_filter: str = field(default="", metadata=_doc(
        "LDAP filter every dashboard user matches. Empty: enabled user accounts "
        "((&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2))) on "
        "Active Directory, (objectClass=inetOrgPerson) on OpenLDAP). An account that stops matching is "
        "disabled here."))
    login_attribute: str = field(default="", metadata=_doc(
        "Attribute holding the sign-in name. Empty: sAMAccountName (Active Directory), uid (OpenLDAP)."))
    id_attribute: str = field(default="", metadata=_doc(
        "Attribute that never changes for an account, even when it is renamed or moved. Empty: objectGUID "
        "(Active Directory), entryUUID (OpenLDAP)."))
    email_attribute: str = field(default="mail", metadata=_doc("Attribute holding the e-mail address."))
    name_attribute: str = field(default="", metadata=_doc(
        "Attribute holding the display name. Empty: displayName (Active Directory), cn (OpenLDAP)."))
    group_base: str = field(default="", metadata=_doc(
        "Where groups are searched, e.g. ou=groups,dc=corp,dc=example. Empty: user_base."))
    group_filter: str = field(default="", metadata=_doc(
        "LDAP filter every group matches. Empty: (objectClass=group) on Active Directory, "
        "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)) on OpenLDAP."))
    group_member_attribute: str = field(default="member", metadata=_doc(
        "Attribute of a group listing its members' DNs (member, or uniqueMember for groupOfUniqueNames)."))
    nested_groups: bool = field(default=True, metadata=_doc(
        "A member of a group that is itself a member of a mapped group gets that group's roles."))
    max_nesting: int = field(default=10, metadata=_doc(
        "OpenLDAP: how many levels of groups in groups are followed (cycles are cut).", min=1, max=50))
    ask_totp: bool = field(default=True, metadata=_doc(
        "Directory users are asked for their Vigatra TOTP code like local users (and must enrol one when "
        "auth.mfa_required). false: the directory password alone signs them in."))
    sync_interval_minutes: int = field(default=30, metadata=_doc(
        "How often directory users' roles and account status are refreshed inside `vigatra serve` (also at each "
        "sign-in): a removed group removes the role, a disabled account is disabled here and its sessions, "
        "tokens and API keys stop working.", min=1, max=1440))
    timeout_seconds: int = field(default=10, metadata=_doc(
        "Timeout of one directory connection or operation.", min=1, max=120))


@dataclass(frozen=True)
class OidcSettings:
    enabled: bool = field(default=False, metadata=_doc(
        "Dashboard users sign in through an OpenID Connect provider (authorization code flow with PKCE)."))
    issuer: str = field(default="", metadata=_doc(
        "The provider's issuer URL, e.g. https://login.corp.example/realms/corp; its discovery document is "
        "read from <issuer>/.well-known/openid-configuration. Every request goes to this one host."))
    client_id: str = field(default="", metadata=_doc("The client id registered for this appliance."))
    client_secret_name: str = field(default="oidc-client-secret", metadata=_doc(
        "Name under which the key provider holds the client secret (as for directory.ldap.bind_password_secret)."
        " Unused when client_auth is none (a public client, PKCE only)."))
    client_auth: Literal["client_secret_basic", "client_secret_post", "none"] = field(
        default="client_secret_basic", metadata=_doc("How the appliance authenticates at the token endpoint."))
    scopes: tuple[str, ...] = field(default=("openid", "profile", "email"), metadata=_doc(
        "Scopes asked for (openid is always included)."))
    username_claim: str = field(default="preferred_username", metadata=_doc(
        "ID token claim that becomes the user name here (lower-cased; letters, digits and . _ @ -)."))
    email_claim: str = field(default="email", metadata=_doc("ID token claim holding the e-mail address."))
    name_claim: str = field(default="name", metadata=_doc("ID token claim holding the display name."))
    groups_claim: str = field(default="groups", metadata=_doc(
        "ID token claim listing the user's groups; its values are looked up in directory.role_map."))
    ca_file: Path | None = field(default=None, metadata=_doc(
        "CA bundle (PEM) that signs the provider's certificate. Empty: the system's trusted CAs."))
    use_egress_proxy: bool = field(default=False, metadata=_doc(
        "Reach the provider through egress.proxy (an internet provider behind the corporate proxy)."))
    ask_totp: bool = field(default=False, metadata=_doc(
        "Also ask users signed in through the provider for their Vigatra TOTP code (those who enrolled one), "
        "as a second step after the provider's callback. Usually false: the provider applies the firm's MFA "
        "policy."))
    button_label: str = field(default="Sign in with single sign-on", metadata=_doc(
        "The sign-in page's button for this provider."))
    timeout_seconds: int = field(default=10, metadata=_doc("Timeout of one request to the provider.",
                                                           min=1, max=120))


@dataclass(frozen=True)
class DirectorySettings:
    ldap: LdapSettings = field(default_factory=LdapSettings, metadata=_doc(
        "Sign-in with the firm's LDAP directory or Active Directory."))
    oidc: OidcSettings = field(default_factory=OidcSettings, metadata=_doc(
        "Sign-in with the firm's OpenID Connect provider."))
    role_map: dict[str, tuple[str, ...]] = field(default_factory=dict, metadata=_doc(
        "Directory groups -> role names. Keys are LDAP group DNs (matched without regard to case or spaces) or "
        "values of the OIDC groups claim (matched exactly). A directory user holds the roles of every group "
        "they are in (nested groups included), and only those; with none, they cannot sign in. Local accounts "
        "keep their own roles: at least one local Admin remains for break-glass."))

    @property
    def enabled(self) -> bool:
        return self.ldap.enabled or self.oidc.enabled


@dataclass(frozen=True)
class RosterLdapSettings:
    enabled: bool = field(default=False, metadata=_doc(
        "Read the monitored employees from directory.ldap (its service account) on a schedule."))
    base: str = field(default="", metadata=_doc("Where employees are searched. Empty: directory.ldap.user_base."))
    filter: str = field(default="", metadata=_doc(
        "LDAP filter every employee matches. Empty: directory.ldap's user filter."))
    group: str = field(default="", metadata=_doc(
        "DN of the group whose members (nested groups included) are the employees. Empty: everyone the base "
        "and filter find."))
    access_person_group: str = field(default="", metadata=_doc(
        "DN of the group whose members (nested included) are access persons. Empty: the flag is left alone."))
    name_attribute: str = field(default="", metadata=_doc(
        "Employee name. Empty: displayName (Active Directory), cn (OpenLDAP)."))
    email_attribute: str = field(default="mail", metadata=_doc("E-mail address (required for every employee)."))
    department_attribute: str = field(default="department", metadata=_doc("Department."))
    manager_attribute: str = field(default="manager", metadata=_doc(
        "The manager's DN; their e-mail address is stored."))
    employee_number_attribute: str = field(default="", metadata=_doc(
        "Employee number (matched first, then the e-mail). Empty: employeeID (Active Directory), "
        "employeeNumber (OpenLDAP)."))
    interval_minutes: int = field(default=60, metadata=_doc(
        "How often the directory's roster is read inside `vigatra serve`.", min=5, max=10080))


@dataclass(frozen=True)
class RosterFileSettings:
    directory: str = field(default="", metadata=_doc(
        "Directory the HR system drops roster exports into (CSV with a header row, or JSON: a list of objects "
        "with name, email, department, employee_number, manager, access_person). Each file is the whole "
        "roster: people missing from it are departures. A processed file moves to processed/, a refused one "
        "to rejected/ beside it. Empty: off."))
    interval_minutes: int = field(default=15, metadata=_doc(
        "How often the directory is looked at inside `vigatra serve`.", min=1, max=10080))


@dataclass(frozen=True)
class RosterSettings:
    ldap: RosterLdapSettings = field(default_factory=RosterLdapSettings, metadata=_doc(
        "Employees from the directory."))
    files: RosterFileSettings = field(default_factory=RosterFileSettings, metadata=_doc(
        "Employees from HR export files."))
    max_departures_percent: int = field(default=20, metadata=_doc(
        "A scheduled sync that would offboard more than this share of a source's employees is held back and "
        "raises an alert (an emptied export or a mistyped filter must not offboard the firm); `vigatra roster "
        "sync --allow-mass-departures` applies it.", min=1, max=100))


@dataclass(frozen=True)
class PortalSettings:
    sign_in_link_minutes: int = field(default=15, metadata=_doc(
        "An employee's portal sign-in link works once, in the browser that requested or first opened it, for "
        "this many minutes.", min=1, max=60))
    session_idle_minutes: int = field(default=30, metadata=_doc(
        "An employee's portal session ends after this long without a request.", min=1, max=1440))
    session_absolute_hours: int = field(default=8, metadata=_doc(
        "An employee's portal session ends this long after sign-in, whatever happens.", min=1, max=168))
    link_requests_per_window: int = field(default=10, metadata=_doc(
        "Sign-in links one IP address may ask for per 10 minutes before it is throttled (directory sign-in "
        "attempts on /me/sign-in count against the same allowance).", min=1, max=1000))
    directory_sign_in: bool = field(default=True, metadata=_doc(
        "Offer employees sign-in through the firm's directory on /me/sign-in when directory.ldap (user name and "
        "password, a bind as the person) or directory.oidc (the provider's button) is enabled. The person is "
        "matched to an employee by portal.match_by; it never opens a dashboard session."))
    match_by: Literal["email", "employee_number"] = field(default="email", metadata=_doc(
        "How a directory person is matched to an employee: email (the directory's e-mail attribute or the ID "
        "token's email claim, against the employee's e-mail) or employee_number (against the employee number "
        "the roster or the import recorded)."))
    ldap_employee_number_attribute: str = field(default="", metadata=_doc(
        "With match_by employee_number: the directory attribute holding it. Empty: roster.ldap's "
        "employee_number_attribute, else employeeID (Active Directory), employeeNumber (OpenLDAP)."))
    oidc_employee_number_claim: str = field(default="employee_number", metadata=_doc(
        "With match_by employee_number: the ID token claim holding it."))


@dataclass(frozen=True)
class PreclearanceSettings:
    time_zone: str = field(default="UTC", metadata=_doc(
        "The firm's time zone (IANA name, e.g. America/New_York): business days and the end of an approval's "
        "window are counted in it."))
    window_business_days: int = field(default=1, metadata=_doc(
        "An approval is valid until the end of this many business days after the day it was given (1: until "
        "the end of the next business day; 0: until the end of the same day), in preclearance.time_zone.",
        min=0, max=30))
    holidays: tuple[str, ...] = field(default=(), metadata=_doc(
        "Dates (YYYY-MM-DD) that are not business days, besides Saturdays and Sundays."))
    tolerance_percent: int = field(default=10, metadata=_doc(
        "Trades may exceed the approved quantity (or notional) by this many percent and still match.",
        min=0, max=100))
    auto_approve: bool = field(default=False, metadata=_doc(
        "Approve requests automatically when no rule denies them and every auto_approve_* condition holds; "
        "otherwise they wait for a Compliance user."))
    auto_approve_groups: tuple[str, ...] = field(default=(), metadata=_doc(
        "Automatic approval only for members of these employee groups (names); empty: any employee."))
    auto_approve_kinds: tuple[Literal["asset", "market"], ...] = field(default=("asset", "market"), metadata=_doc(
        "Automatic approval only for these kinds of request: asset (coins and tokens), market (prediction "
        "markets)."))
    auto_approve_below: str = field(default="", metadata=_doc(
        "Automatic approval only below this value in the base currency (the notional asked, or the quantity at "
        "the current price; a request that cannot be valued waits for a reviewer). Empty: any value."))




@dataclass(frozen=True)
class AttestationSettings:
    initial_due_days: int = field(default=10, metadata=_doc(
        "An initial holdings report is due this many days after the day someone became an access person "
        "(SEC Rule 204A-1: 10).", min=1, max=90))
    quarterly_due_days: int = field(default=30, metadata=_doc(
        "A quarterly transactions report is due this many days after the quarter's end (SEC Rule 204A-1: 30).",
        min=1, max=90))
    annual_due: str = field(default="02-14", metadata=_doc(
        "An annual holdings report for year Y (holdings as of 31 December of Y) is due on this month-day "
        "(MM-DD) of year Y+1, unless the campaign gives its own due date."))
    acknowledgement_due_days: int = field(default=10, metadata=_doc(
        "A code-of-ethics acknowledgement is due this many days after the version was published, unless the "
        "campaign gives its own due date.", min=1, max=365))
    remind_before_days: int = field(default=5, metadata=_doc(
        "An open task's owner gets one reminder e-mail this many days before its due date (0: none).",
        min=0, max=60))
    remind_after_days: int = field(default=3, metadata=_doc(
        "A late task's owner gets a reminder e-mail the day after its due date and again every this many days "
        "while it stays late (0: none).", min=0, max=60))
