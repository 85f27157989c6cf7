"""A real OpenLDAP server (Debian's slapd) on loopback, seeded with a small firm, for the directory tests.

It listens on ldap:// (StartTLS) and ldaps:// with a certificate signed by a CA the test makes, loads the
ppolicy overlay (a locked account carries pwdAccountLockedTime, as administrators lock them), and holds:

- the service account cn=svc-vigatra,ou=service (the appliance searches with it);
- people under ou=people: alice-dir (Admin through vigatra-admins), carl (Compliance through a group
  nested in vigatra-compliance), vera (Viewer), dan (no mapped group), emma (Admin and Viewer);
  each with mail, cn, departmentNumber, employeeNumber and a manager;
- groups under ou=groups (groupOfNames): the mapped ones, a nested team, the roster's staff group (with
  a nested desk) and the access-person group.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.proc import free_port

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret-for-tests-only"
SERVICE_DN = f"cn=svc-vigatra,ou=service,{SUFFIX}"
SERVICE_PASSWORD = "service-account-password-for-tests"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
ADMINS = f"cn=vigatra-admins,{GROUPS}"
COMPLIANCE = f"cn=vigatra-compliance,{GROUPS}"
VIEWERS = f"cn=vigatra-viewers,{GROUPS}"
COMPLIANCE_TEAM = f"cn=compliance-team,{GROUPS}"
STAFF = f"cn=staff,{GROUPS}"
TRADING_DESK = f"cn=trading-desk,{GROUPS}"
ACCESS_PERSONS = f"cn=access-persons,{GROUPS}"


def person_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


# uid: (cn, mail, department, employee number, manager uid, password)
SEED_PEOPLE: dict[str, tuple[str, str, str, str, str, str]] = {
    "alice-dir": ("Alice Directory", "alice.dir@example.org", "Compliance", "E1001", "", "alice-directory-password"),
    "carl": ("Carl Compliance", "carl@example.org", "Compliance", "E1002", "alice-dir", "carl-directory-password"),
    "vera": ("Vera Viewer", "vera@example.org", "Operations", "E1003", "alice-dir", "vera-directory-password"),
    "dan": ("Dan Nogroup", "dan@example.org", "Trading", "E1004", "vera", "dan-directory-password"),
    "emma": ("Emma Twohats", "emma@example.org", "Trading", "E1005", "dan", "emma-directory-password"),
}
SEED_GROUPS: dict[str, list[str]] = {
    ADMINS: [person_dn("alice-dir"), person_dn("emma")],
    COMPLIANCE_TEAM: [person_dn("carl")],
    COMPLIANCE: [COMPLIANCE_TEAM],
    VIEWERS: [person_dn("vera"), person_dn("emma")],
    TRADING_DESK: [person_dn("dan"), person_dn("emma")],
    STAFF: [person_dn("carl"), person_dn("vera"), TRADING_DESK],
    ACCESS_PERSONS: [TRADING_DESK],
}


@dataclass
class TestCA:
    cert_path: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def make_ca(directory: Path, name: str = "Vigatra Test CA") -> TestCA:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    path = directory / f"{name.replace(' ', '-').lower()}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TestCA(path, key, cert)


def issue_server_cert(ca: TestCA, directory: Path, names: Iterable[str] = ("localhost",)) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(names)
    now = dt.datetime.now(dt.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))
    cert_path, key_path = directory / f"{names[0]}.crt", directory / f"{names[0]}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def find_slapd() -> str | None:
    for candidate in ("/usr/sbin/slapd",):
        if os.path.exists(candidate):
            return candidate
    return shutil.which("slapd")


def _seed_ldif() -> str:
    blocks = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example Bank",
        f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people",
        f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: ou=service,{SUFFIX}\nobjectClass: organizationalUnit\nou: service",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: svc-vigatra\n"
        f"userPassword: {SERVICE_PASSWORD}",
    ]
    for uid, (cn, mail, department, number, manager, password) in SEED_PEOPLE.items():
        lines = [f"dn: {person_dn(uid)}", "objectClass: inetOrgPerson", f"uid: {uid}", f"cn: {cn}",
                 f"sn: {cn.split()[-1]}", f"mail: {mail}", f"departmentNumber: {department}",
                 f"employeeNumber: {number}", f"userPassword: {password}"]
        if manager:
            lines.append(f"manager: {person_dn(manager)}")
        blocks.append("\n".join(lines))
    for group, members in SEED_GROUPS.items():
        cn = group.split(",")[0].split("=")[1]
        blocks.append("\n".join([f"dn: {group}", "objectClass: groupOfNames", f"cn: {cn}",
                                 *(f"member: {m}" for m in members)]))
    return "\n\n".join(blocks) + "\n"


@dataclass
class Slapd:
    directory: Path
    process: subprocess.Popen[bytes]
    ldap_port: int
    ldaps_port: int
    ca: TestCA
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://localhost:{self.ldaps_port}"

    @property
    def starttls_url(self) -> str:
        return f"ldap://localhost:{self.ldap_port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    # -- changes the tests make, as the directory's administrator -------------------------------------------

    def _admin(self) -> object:
        import ssl

        from ldap3 import Connection, Server, Tls

        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca.cert_path))
        server = Server("localhost", port=self.ldaps_port, use_ssl=True, tls=tls)
        return Connection(server, user=ROOT_DN, password=ROOT_PASSWORD, auto_bind=True, raise_exceptions=True)

    def modify(self, dn: str, changes: dict[str, list[tuple[str, list[str]]]]) -> None:
        conn = self._admin()
        try:
            conn.modify(dn, changes)  # type: ignore[attr-defined]
        finally:
            conn.unbind()  # type: ignore[attr-defined]

    def add_member(self, group: str, member: str) -> None:
        self.modify(group, {"member": [("MODIFY_ADD", [member])]})

    def remove_member(self, group: str, member: str) -> None:
        self.modify(group, {"member": [("MODIFY_DELETE", [member])]})

    def lock(self, dn: str) -> None:
        """Lock the account the way an administrator does with ppolicy (permanently)."""
        self.modify(dn, {"pwdAccountLockedTime": [("MODIFY_REPLACE", ["000001010000Z"])]})

    def unlock(self, dn: str) -> None:
        self.modify(dn, {"pwdAccountLockedTime": [("MODIFY_DELETE", [])]})

    def set_attribute(self, dn: str, attribute: str, value: str) -> None:
        self.modify(dn, {attribute: [("MODIFY_REPLACE", [value])]})

    def add_person(self, uid: str, cn: str, mail: str, number: str, password: str) -> None:
        conn = self._admin()
        try:
            conn.add(person_dn(uid), ["inetOrgPerson"], {  # type: ignore[attr-defined]
                "uid": uid, "cn": cn, "sn": cn.rsplit(maxsplit=1)[-1], "mail": mail, "employeeNumber": number,
                "departmentNumber": "Trading", "userPassword": password})
        finally:
            conn.unbind()  # type: ignore[attr-defined]

    def add_ad_person(self, uid: str, cn: str, mail: str, password: str, guid: bytes, uac: int = 512) -> None:
        """A person carrying Active Directory's userAccountControl and objectGUID (the test schema above)."""
        conn = self._admin()
        try:
            conn.add(person_dn(uid), ["inetOrgPerson", "vigatraTestAdAccount"], {  # type: ignore[attr-defined]
                "uid": uid, "cn": cn, "sn": cn.rsplit(maxsplit=1)[-1], "mail": mail, "userPassword": password,
                "userAccountControl": str(uac), "objectGUID": guid})
        finally:
            conn.unbind()  # type: ignore[attr-defined]

    def delete(self, dn: str) -> None:
        conn = self._admin()
        try:
            conn.delete(dn)  # type: ignore[attr-defined]
        finally:
            conn.unbind()  # type: ignore[attr-defined]


# Two Active Directory attributes (with AD's own OIDs) on an auxiliary class, so the appliance's AD code paths run
# against a real server: userAccountControl (an INTEGER: OpenLDAP evaluates AD's bitwise-AND matching rule
# 1.2.840.113556.1.4.803 on it) and objectGUID (16 raw bytes). OpenLDAP has no LDAP_MATCHING_RULE_IN_CHAIN.
AD_TEST_SCHEMA = """
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.2 NAME 'objectGUID' EQUALITY octetStringMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.7.1 NAME 'vigatraTestAdAccount' AUXILIARY MAY ( userAccountControl $ objectGUID ) )
"""


def start_slapd(directory: Path) -> Slapd:
    slapd = find_slapd()
    assert slapd is not None, "slapd is missing: `make test` installs Debian's slapd package"
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory)
    cert, key = issue_server_cert(ca, directory)
    data = directory / "data"
    data.mkdir(exist_ok=True)
    conf = directory / "slapd.conf"
    ad_schema = directory / "ad-test.schema"
    ad_schema.write_text(AD_TEST_SCHEMA)
    conf.write_text(f"""
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include {ad_schema}
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {directory}/slapd.pid
TLSCACertificateFile {ca.cert_path}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
TLSProtocolMin 3.3
database mdb
maxsize 33554432
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {data}
index objectClass eq
index uid,mail,member,entryUUID eq
overlay ppolicy
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact="{SERVICE_DN}" read by self read by * none
""")
    seed = directory / "seed.ldif"
    seed.write_text(_seed_ldif())
    subprocess.run([slapd.replace("slapd", "slapadd") if os.path.exists(slapd.replace("slapd", "slapadd"))
                    else "slapadd", "-q", "-f", str(conf), "-l", str(seed)], check=True, capture_output=True,
                   timeout=60)
    ldap_port, ldaps_port = free_port(), free_port()
    urls = f"ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"
    process = subprocess.Popen([slapd, "-d", "0", "-f", str(conf), "-h", urls], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    import socket

    deadline = time.time() + 20
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"slapd exited: {process.stderr.read().decode() if process.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", ldaps_port)) == 0:
                passwords = {uid: row[5] for uid, row in SEED_PEOPLE.items()}
                return Slapd(directory, process, ldap_port, ldaps_port, ca, passwords)
        time.sleep(0.05)
    process.kill()
    raise AssertionError("slapd did not start")
