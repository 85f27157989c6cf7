"""Active Directory's account attributes against the real slapd, with a test schema declaring them
(tests/support/slapd.py AD_TEST_SCHEMA): userAccountControl's ACCOUNTDISABLE bit (2) through AD's bitwise-AND
matching rule in the user filter and through the appliance's own check, and objectGUID as the account's
stable id (16 raw bytes, little-endian UUID). What OpenLDAP cannot run: LDAP_MATCHING_RULE_IN_CHAIN (nested
groups on AD), objectCategory, sAMAccountName — those remain untested against a real AD."""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from typing import Any

import pytest

from appliance.auth.directory import DirectoryRefused
from appliance.auth.directory.ldap import LdapDirectory
from appliance.settings import LdapSettings
from tests.support import slapd as seed
from tests.support.slapd import Slapd

AD_FILTER = "(&(objectClass=vigatraTestAdAccount)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"


def _directory(slapd: Slapd, **changes: Any) -> LdapDirectory:
    settings = LdapSettings(enabled=True, url=slapd.ldaps_url, ca_file=slapd.ca.cert_path,
                            server_type="active_directory", bind_dn=seed.SERVICE_DN, user_base=seed.PEOPLE,
                            group_base=seed.GROUPS, user_filter=AD_FILTER, login_attribute="uid",
                            name_attribute="cn", group_filter="(objectClass=groupOfNames)", nested_groups=False)
    return LdapDirectory(dataclasses.replace(settings, **changes), seed.SERVICE_PASSWORD)


@pytest.fixture
def ad_person(slapd: Slapd) -> Any:
    uid = "ad" + secrets.token_hex(4)
    guid = uuid.uuid4()
    password = "ad-password-" + secrets.token_hex(4)
    slapd.add_ad_person(uid, f"Ada {uid}", f"{uid}@example.org", password, guid.bytes_le)
    try:
        yield uid, password, guid
    finally:
        slapd.delete(seed.person_dn(uid))


def test_object_guid_is_the_stable_id_and_finds_the_account_again(slapd: Slapd, ad_person: Any) -> None:
    uid, password, guid = ad_person
    directory = _directory(slapd)
    person = directory.authenticate(uid, password)
    assert person.directory_id == str(guid) and not person.disabled and person.email == f"{uid}@example.org"
    with directory.service() as conn:
        again = directory.lookup(conn, str(guid))
    assert again is not None and again.login == uid


def test_the_disabled_bit_takes_effect_through_the_filter_and_the_check(slapd: Slapd, ad_person: Any) -> None:
    uid, password, guid = ad_person
    slapd.set_attribute(seed.person_dn(uid), "userAccountControl", str(512 | 2))
    # AD's default user filter shape excludes the disabled account (the bitwise-AND rule, evaluated by slapd).
    with pytest.raises(DirectoryRefused, match="no such account"):
        _directory(slapd).authenticate(uid, password)
    with _directory(slapd).service() as conn:
        assert _directory(slapd).lookup(conn, str(guid)) is None  # the periodic sync sees it gone
    # A filter that lets it through still meets the appliance's own userAccountControl check.
    with pytest.raises(DirectoryRefused, match="disabled"):
        _directory(slapd, user_filter="(objectClass=vigatraTestAdAccount)").authenticate(uid, password)
    slapd.set_attribute(seed.person_dn(uid), "userAccountControl", "512")
    assert _directory(slapd).authenticate(uid, password).directory_id == str(guid)
