"""LDAP / Active Directory on ldap3 (pure Python, RFC 4510): TLS only, a read-only service account.

Every connection is LDAPS or StartTLS with the server's certificate and host name checked against
``directory.ldap.ca_file`` (or the system's CAs) before a DN or a password is sent. The service
account (its password from the key provider) searches; a person is authenticated by a bind as their
own DN on a connection of its own, which is then dropped.

Groups, nested ones included:
- Active Directory resolves nesting itself with LDAP_MATCHING_RULE_IN_CHAIN (1.2.840.113556.1.4.1941):
  ``(member:1.2.840.113556.1.4.1941:=<user DN>)`` finds every group a user is in, directly or not, and
  ``(memberOf:1.2.840.113556.1.4.1941:=<group DN>)`` every user in a group.
- OpenLDAP has no such rule: a user's groups are found level by level (the groups listing the user,
  then the groups listing those...), up to ``max_nesting`` levels, each group visited once (cycles end);
  a group's members are expanded downwards the same way.

DNs are compared normalised (:func:`normalise_dn`: attribute names and values lower-cased, spaces around
separators dropped), which is how both servers compare the names used here (cn, ou, dc, uid).

The person-level entry point, :meth:`LdapDirectory.authenticate`, returns a :class:`DirectoryPerson`
(name, e-mail, groups, disabled flag): the dashboard's sign-in uses it, and so can the employee
portal's (issue 24 item 4).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ldap3 import BASE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPBindError,
    LDAPCertificateError,
    LDAPException,
    LDAPInvalidCredentialsResult,
    LDAPSocketOpenError,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_bytes, escape_filter_chars
from ldap3.utils.dn import parse_dn

from appliance.auth.directory import DirectoryRefused, DirectoryUnavailable
from appliance.settings import LdapSettings, RosterLdapSettings

log = logging.getLogger(__name__)

IN_CHAIN = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN (Active Directory)
UAC_DISABLED = 0x2  # userAccountControl ACCOUNTDISABLE
_OR_CHUNK = 50  # DNs per (|(member=...)...) filter when resolving OpenLDAP groups level by level
_PAGE = 500

_DEFAULTS = {
    "active_directory": {
        "user_filter": "(&(objectCategory=person)(objectClass=user)"
                       "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
        "login_attribute": "sAMAccountName",
        "id_attribute": "objectGUID",
        "name_attribute": "displayName",
        "group_filter": "(objectClass=group)",
        "employee_number_attribute": "employeeID",
    },
    "openldap": {
        "user_filter": "(objectClass=inetOrgPerson)",
        "login_attribute": "uid",
        "id_attribute": "entryUUID",
        "name_attribute": "cn",
        "group_filter": "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))",
        "employee_number_attribute": "employeeNumber",
    },
}


@dataclass(frozen=True)
class DirectoryPerson:
    """A directory account as the appliance needs it. ``groups`` are normalised DNs."""

    dn: str
    directory_id: str
    login: str
    email: str
    name: str
    groups: frozenset[str]
    disabled: bool
    employee_number: str = ""  # read only when asked for (the employee portal's match_by employee_number)


@dataclass(frozen=True)
class RosterEntry:
    """One employee as the directory lists them."""

    dn: str
    name: str
    email: str
    department: str
    manager_email: str
    employee_number: str
    access_person: bool | None  # None: no access-person group configured


def normalise_dn(dn: str) -> str:
    """A DN in the form used for comparisons: ``cn=a b,ou=x,dc=y`` (lower case, no spaces around , and =)."""
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except LDAPException:
        return dn.strip().lower()
    return ",".join(f"{attr.strip().lower()}={value.strip().lower()}" for attr, value, _sep in parts)


def effective(settings: LdapSettings, name: str) -> str:
    """A setting, or the server type's default when it is empty."""
    value = str(getattr(settings, name, "") or "")
    return value or _DEFAULTS[settings.server_type].get(name, "")


def employee_number_attribute(settings: LdapSettings, roster: RosterLdapSettings | None = None) -> str:
    """The attribute holding the employee number: the roster's setting, else the server type's default."""
    configured = roster.employee_number_attribute if roster is not None else ""
    return configured or _DEFAULTS[settings.server_type]["employee_number_attribute"]


def _first(entry: dict[str, Any], attribute: str) -> str:
    """The first value of an attribute as text ('' when absent)."""
    if not attribute:
        return ""
    for key, values in (entry.get("attributes") or {}).items():
        if key.lower() != attribute.lower():
            continue
        value = (values[0] if values else "") if isinstance(values, (list, tuple)) else values
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace").strip()
        return str(value).strip() if value is not None else ""
    return ""


def _raw_first(entry: dict[str, Any], attribute: str) -> bytes:
    for key, values in (entry.get("raw_attributes") or {}).items():
        if key.lower() == attribute.lower() and values:
            value = values[0]
            return value if isinstance(value, bytes) else str(value).encode()
    return b""


class LdapDirectory:
    """One configured directory. Thread-safe: every call opens its own connection."""

    def __init__(self, settings: LdapSettings, bind_password: str) -> None:
        self.settings = settings
        self._bind_password = bind_password
        url = urlsplit(settings.url.strip())
        self.host = url.hostname or ""
        self.use_ssl = url.scheme.lower() == "ldaps"
        self.port = url.port or (636 if self.use_ssl else 389)
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
                  sni=self.host)
        self.server = Server(self.host, port=self.port, use_ssl=self.use_ssl, tls=tls, get_info="NO_INFO",
                             connect_timeout=settings.timeout_seconds)
        self.is_ad = settings.server_type == "active_directory"

    def __repr__(self) -> str:
        return f"<LdapDirectory {self.describe()}>"

    def describe(self) -> str:
        how = "LDAPS" if self.use_ssl else "StartTLS"
        return f"{self.host}:{self.port} ({how})"

    # -- connections ------------------------------------------------------------------------------

    def _connection(self, user: str, password: str) -> Connection:
        return Connection(self.server, user=user, password=password, auto_bind="NONE", raise_exceptions=True,
                          read_only=True, receive_timeout=self.settings.timeout_seconds, auto_referrals=False,
                          check_names=True)

    def _open(self, conn: Connection) -> None:
        """Connect and secure the connection (LDAPS, or StartTLS before anything else), without binding."""
        where = self.describe()
        try:
            conn.open()
            if not self.use_ssl:
                conn.start_tls()
        except LDAPCertificateError:
            raise DirectoryUnavailable(f"the directory {where} presented a certificate that does not name "
                                       f"{self.host}") from None
        except (LDAPSocketOpenError, LDAPStartTLSError) as exc:
            text = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                raise DirectoryUnavailable(
                    f"the directory {where} presented a certificate that is not trusted: set directory.ldap.ca_file "
                    "to the CA that signed it") from None
            if isinstance(exc, LDAPStartTLSError):
                raise DirectoryUnavailable(f"the directory {where} refused StartTLS") from None
            raise DirectoryUnavailable(f"cannot reach the directory {where} ({type(exc).__name__})") from None
        except LDAPException as exc:
            raise DirectoryUnavailable(f"cannot reach the directory {where} ({type(exc).__name__})") from None
        except (OSError, ssl.SSLError) as exc:
            raise DirectoryUnavailable(f"cannot reach the directory {where} ({type(exc).__name__})") from None

    @contextmanager
    def service(self) -> Iterator[Connection]:
        """A connection bound as the service account."""
        conn = self._connection(self.settings.bind_dn, self._bind_password)
        self._open(conn)
        try:
            try:
                conn.bind()
            except (LDAPInvalidCredentialsResult, LDAPBindError):
                raise DirectoryUnavailable(
                    f"the directory {self.describe()} refused the service account {self.settings.bind_dn} "
                    f"(check its password under the key provider's secret {self.settings.bind_password_secret!r})"
                ) from None
            except LDAPException as exc:
                raise DirectoryUnavailable(f"the directory {self.describe()} failed the service account's bind "
                                           f"({type(exc).__name__})") from None
            yield conn
        finally:
            _unbind(conn)

    def _search(self, conn: Connection, base: str, search_filter: str, attributes: Iterable[str], *,
                scope: str = SUBTREE) -> list[dict[str, Any]]:
        try:
            found = conn.extend.standard.paged_search(base, search_filter, search_scope=scope,
                                                      attributes=list(attributes) or ["1.1"], paged_size=_PAGE,
                                                      generator=False)
        except LDAPException as exc:
            raise DirectoryUnavailable(f"the directory {self.describe()} failed a search under {base} "
                                       f"({type(exc).__name__}: {str(exc)[:120]})") from None
        return [entry for entry in found or [] if entry.get("type") == "searchResEntry"]

    # -- users ------------------------------------------------------------------------------------

    def _user_attributes(self) -> list[str]:
        wanted = [effective(self.settings, "login_attribute"), effective(self.settings, "id_attribute"),
                  self.settings.email_attribute, effective(self.settings, "name_attribute")]
        wanted.append("userAccountControl" if self.is_ad else "pwdAccountLockedTime")
        return [a for a in wanted if a]

    def _directory_id(self, entry: dict[str, Any]) -> str:
        attribute = effective(self.settings, "id_attribute")
        raw = _raw_first(entry, attribute)
        if attribute.lower() == "objectguid" and len(raw) == 16:
            return str(uuid.UUID(bytes_le=raw))
        return raw.decode("utf-8", "replace").strip() or normalise_dn(entry["dn"])

    def _id_filter(self, directory_id: str) -> str:
        attribute = effective(self.settings, "id_attribute")
        if attribute.lower() == "objectguid":
            try:
                value = escape_bytes(uuid.UUID(directory_id).bytes_le)
            except ValueError:
                return "(objectClass=__none__)"
        else:
            value = escape_filter_chars(directory_id)
        return f"({attribute}={value})"

    def _disabled(self, entry: dict[str, Any]) -> bool:
        if self.is_ad:
            try:
                return bool(int(_first(entry, "userAccountControl") or "0") & UAC_DISABLED)
            except ValueError:
                return False
        return bool(_first(entry, "pwdAccountLockedTime"))

    def _person(self, conn: Connection, entry: dict[str, Any], number_attribute: str = "") -> DirectoryPerson:
        return DirectoryPerson(employee_number=_first(entry, number_attribute),
            dn=entry["dn"], directory_id=self._directory_id(entry),
            login=_first(entry, effective(self.settings, "login_attribute")),
            email=_first(entry, self.settings.email_attribute),
            name=_first(entry, effective(self.settings, "name_attribute")),
            groups=frozenset(self.groups_of(conn, entry["dn"])), disabled=self._disabled(entry))

    def _user_filter(self) -> str:
        return effective(self.settings, "user_filter")

    def find_login(self, conn: Connection, login: str, extra: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The one account whose sign-in name is ``login``; None when there is none (or several)."""
        attribute = effective(self.settings, "login_attribute")
        search_filter = f"(&{self._user_filter()}({attribute}={escape_filter_chars(login)}))"
        found = self._search(conn, self.settings.user_base, search_filter, [*self._user_attributes(), *extra])
        if len(found) > 1:
            log.warning("directory: %d accounts answer to one sign-in name; refusing them all", len(found))
            return None
        return found[0] if found else None

    def authenticate(self, login: str, password: str, *, number_attribute: str = "") -> DirectoryPerson:
        """The person whose sign-in name and password these are, with their groups.

        DirectoryRefused when the name is unknown, the password wrong (an empty one is refused before
        anything is sent: an empty password is an unauthenticated bind that servers accept) or the
        account disabled; DirectoryUnavailable when the directory cannot answer. ``number_attribute``: also
        read the employee number from it.
        """
        if not login or not password or "\x00" in password:
            raise DirectoryRefused("a user name and a password are required")
        with self.service() as conn:
            entry = self.find_login(conn, login, (number_attribute,) if number_attribute else ())
            if entry is None:
                raise DirectoryRefused("no such account in the directory (or it does not match the user filter)")
            if self._disabled(entry):
                raise DirectoryRefused("the directory account is disabled")
            self._check_password(entry["dn"], password)
            return self._person(conn, entry, number_attribute)

    def _check_password(self, dn: str, password: str) -> None:
        conn = self._connection(dn, password)
        self._open(conn)
        try:
            conn.bind()
        except (LDAPInvalidCredentialsResult, LDAPBindError):
            raise DirectoryRefused("wrong password (the directory refused the bind)") from None
        except LDAPException as exc:
            raise DirectoryUnavailable(f"the directory {self.describe()} failed a bind ({type(exc).__name__})"
                                       ) from None
        finally:
            _unbind(conn)

    def lookup(self, conn: Connection, directory_id: str) -> DirectoryPerson | None:
        """The account with this id if it still matches the user filter (else None: removed, moved out of the
        base, or disabled where the filter says so), with its groups."""
        search_filter = f"(&{self._user_filter()}{self._id_filter(directory_id)})"
        found = self._search(conn, self.settings.user_base, search_filter, self._user_attributes())
        if len(found) != 1:
            return None
        return self._person(conn, found[0])

    def count_users(self, conn: Connection) -> int:
        """How many accounts under user_base match the user filter (doctor)."""
        return len(self._search(conn, self.settings.user_base, self._user_filter(), []))

    # -- groups -----------------------------------------------------------------------------------

    def _group_base(self) -> str:
        return self.settings.group_base or self.settings.user_base

    def groups_of(self, conn: Connection, dn: str) -> set[str]:
        """Every group ``dn`` is in (nested ones too when nested_groups), as normalised DNs."""
        member = self.settings.group_member_attribute
        group_filter = effective(self.settings, "group_filter")
        if self.is_ad:
            rule = f":{IN_CHAIN}:" if self.settings.nested_groups else ""
            chain_filter = f"(&{group_filter}({member}{rule}={escape_filter_chars(dn)}))"
            found = self._search(conn, self._group_base(), chain_filter, [])
            return {normalise_dn(e["dn"]) for e in found}
        seen: set[str] = set()
        level = [dn]
        depth = self.settings.max_nesting if self.settings.nested_groups else 1
        for _ in range(depth):
            found_dns: list[str] = []
            for chunk in _chunks(level, _OR_CHUNK):
                members = "".join(f"({member}={escape_filter_chars(d)})" for d in chunk)
                for entry in self._search(conn, self._group_base(), f"(&{group_filter}(|{members}))", []):
                    key = normalise_dn(entry["dn"])
                    if key not in seen:
                        seen.add(key)
                        found_dns.append(entry["dn"])
            if not found_dns:
                break
            level = found_dns
        return seen

    def check_group(self, conn: Connection, group_dn: str) -> int:
        """How many direct members the group has; DirectoryUnavailable when it is not found (doctor)."""
        member = self.settings.group_member_attribute
        found = self._search(conn, group_dn, effective(self.settings, "group_filter"), [member], scope=BASE)
        if not found:
            raise DirectoryUnavailable(f"the group {group_dn} was not found (or does not match the group filter)")
        values = (found[0].get("raw_attributes") or {}).get(member) or []
        return len(values)

    def _members(self, conn: Connection, group_dn: str) -> set[str]:
        """Normalised DNs of the non-group members of a group, nested groups expanded (OpenLDAP)."""
        member = self.settings.group_member_attribute
        groups = {normalise_dn(e["dn"]): e for e in self._search(
            conn, self._group_base(), effective(self.settings, "group_filter"), [member])}
        people: set[str] = set()
        visited: set[str] = set()
        level = [normalise_dn(group_dn)]
        for _ in range(self.settings.max_nesting if self.settings.nested_groups else 1):
            following: list[str] = []
            for key in level:
                if key in visited or key not in groups:
                    continue
                visited.add(key)
                for raw in (groups[key].get("raw_attributes") or {}).get(member) or []:
                    value = normalise_dn(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
                    if value in groups:
                        following.append(value)
                    else:
                        people.add(value)
            if not following:
                break
            level = following
        return people

    # -- the roster --------------------------------------------------------------------------------

    def roster(self, roster: RosterLdapSettings) -> list[RosterEntry]:
        """The employees the roster settings describe, with their manager's e-mail and access-person flag."""
        base = roster.base or self.settings.user_base
        user_filter = roster.filter or self._user_filter()
        name_attr = roster.name_attribute or effective(self.settings, "name_attribute")
        number_attr = roster.employee_number_attribute or _DEFAULTS[self.settings.server_type][
            "employee_number_attribute"]
        attributes = [a for a in (name_attr, roster.email_attribute, roster.department_attribute,
                                  roster.manager_attribute, number_attr) if a]
        with self.service() as conn:
            search_filter = user_filter
            if roster.group and self.is_ad:
                search_filter = f"(&{user_filter}(memberOf:{IN_CHAIN}:={escape_filter_chars(roster.group)}))"
            entries = self._search(conn, base, search_filter, attributes)
            if roster.group and not self.is_ad:
                members = self._members(conn, roster.group)
                entries = [e for e in entries if normalise_dn(e["dn"]) in members]
            access: set[str] | None = None
            if roster.access_person_group:
                access = self._group_people(conn, roster.access_person_group, base, user_filter)
            emails = {normalise_dn(e["dn"]): _first(e, roster.email_attribute).lower() for e in entries}
            out = []
            for entry in entries:
                key = normalise_dn(entry["dn"])
                manager_dn = _first(entry, roster.manager_attribute)
                manager_email = ""
                if manager_dn:
                    manager_key = normalise_dn(manager_dn)
                    manager_email = emails.get(manager_key) or self._email_of(conn, manager_dn, roster)
                    emails.setdefault(manager_key, manager_email)
                out.append(RosterEntry(
                    dn=entry["dn"], name=_first(entry, name_attr), email=_first(entry, roster.email_attribute),
                    department=_first(entry, roster.department_attribute), manager_email=manager_email,
                    employee_number=_first(entry, number_attr),
                    access_person=None if access is None else key in access))
            return out

    def _group_people(self, conn: Connection, group_dn: str, base: str, user_filter: str) -> set[str]:
        if self.is_ad:
            found = self._search(conn, base, f"(&{user_filter}(memberOf:{IN_CHAIN}:={escape_filter_chars(group_dn)}))",
                                 [])
            return {normalise_dn(e["dn"]) for e in found}
        return self._members(conn, group_dn)

    def _email_of(self, conn: Connection, dn: str, roster: RosterLdapSettings) -> str:
        try:
            found = self._search(conn, dn, "(objectClass=*)", [roster.email_attribute], scope=BASE)
        except DirectoryUnavailable:
            return ""  # a manager outside what the service account may read: left blank
        return _first(found[0], roster.email_attribute).lower() if found else ""


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _unbind(conn: Connection) -> None:
    with contextlib.suppress(LDAPException, OSError):  # the connection is going away either way
        conn.unbind()


__all__ = ["IN_CHAIN", "DirectoryPerson", "LdapDirectory", "RosterEntry", "effective", "normalise_dn"]
