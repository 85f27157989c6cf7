"""The UI's forms and query strings, checked like the API's bodies (appliance/boundary/validation.py).

Every form carries the session's CSRF token (checked by the edge before the view runs, or by the
public pages themselves). Browsers send every field of a form, empty ones as "", so optional numbers
take "" for "not given"; query strings drop empty values before they are checked.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from appliance.boundary.params import MAX_ID, Id, Text, UtcTime, Whole
from appliance.boundary.validation import FileStorage, Schema
from appliance.rbac.permissions import SCOPED


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


Scope = Literal["all", "flagged"]

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _day(value: Any) -> dt.date | None:
    """An HTML date input: YYYY-MM-DD, or "" for not given."""
    if value == "":
        return None
    if isinstance(value, str) and _DAY.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError("date", "must be a date (YYYY-MM-DD)")


Day = Annotated[dt.date | None, PlainValidator(_day), WithJsonSchema(
    {"type": "string", "pattern": "^([0-9]{4}-[0-9]{2}-[0-9]{2})?$"})]


class Form(Schema):
    csrf_token: Annotated[str, Text(200)] = ""


class Filters(Schema):
    """The query string of a page: its filter forms send every field, empty ones meaning "not given"."""

    blank_means_absent = True


class NoFields(Form):
    """A button: only the CSRF token."""


# -- sign-in and the user's own account --------------------------------------------------------------

class LoginQuery(Filters):
    next: Annotated[str, Text(2000)] | None = None


class OidcCallbackQuery(Filters):
    """What the OpenID provider sends the browser back with (RFC 6749 4.1.2 and 4.1.2.1)."""

    code: Annotated[str, Text(2000)] | None = None
    state: Annotated[str, Text(500)] | None = None
    error: Annotated[str, Text(200)] | None = None
    error_description: Annotated[str, Text(1000)] | None = None
    iss: Annotated[str, Text(2000)] | None = None
    session_state: Annotated[str, Text(500)] | None = None


class OidcCodeForm(Form):
    """The TOTP code asked after the OpenID provider's callback (directory.oidc.ask_totp)."""

    totp: Annotated[str, Text(16)] = ""


class LoginForm(Form):
    username: Annotated[str, Text(128)] = ""
    password: Annotated[str, Text(1024)] = ""
    totp: Annotated[str, Text(16)] = ""


class PasswordForm(Form):
    current_password: Annotated[str, Text(1024)] = ""
    new_password: Annotated[str, Text(256)] = ""
    confirm_password: Annotated[str, Text(256)] = ""


class MfaCodeForm(Form):
    code: Annotated[str, Text(16)] = ""


# -- employees ---------------------------------------------------------------------------------------

class EmployeeForm(Form):
    name: Annotated[str, Text(200)] = ""
    email: Annotated[str, Text(254)] = ""
    department: Annotated[str, Text(200)] = ""
    external_id: Annotated[str, Text(100)] = ""
    access_person: Literal["", "yes"] = ""
    access_person_since: Day = None


class AccessPersonForm(Form):
    access_person: Literal["", "yes"] = Field(default="", description="yes: an access person; empty: no longer")
    access_person_since: Day = None


class ImportForm(Form):
    file: FileStorage | None = None


class LinkForm(Form):
    purpose: Literal["initial", "reonboard"] = "initial"
    deliver: Literal["show", "email"] = Field(default="show", description="show the link once, or e-mail it to "
                                                                          "the employee (notifications.smtp)")


class StatementForm(Form):
    """A venue's statement export (multipart/form-data; its size is bounded by the app's request limit, the
    parser's by venues.statements.MAX_BYTES) and, optionally, the period it was generated for (whole UTC days)."""

    file: FileStorage | None = None
    covered_from: Day = None
    covered_to: Day = None


# -- oversight ---------------------------------------------------------------------------------------

class EmployeesQuery(Filters):
    q: Annotated[str, Text(200)] | None = None
    status: Literal["active", "offboarded"] | None = None
    red: Literal["yes", "no"] | None = None
    alerts: Literal["yes", "no"] | None = None
    group: Id | None = Field(default=None, description="A group's id: its members only (needs groups:read).")
    sort: Literal["name", "-name", "department", "-department", "status", "-status", "added", "-added"] = "name"
    page: Annotated[int, Whole(1, 1_000_000)] = 1
    access_person: Literal["yes", "no"] | None = None
    after: Annotated[str, Text(400)] | None = Field(
        default=None, description="The cursor the page before gave its Next link: this page starts after it.")


class EmployeePageQuery(Filters):
    """The employee page's transaction filters (days of the firm's calendar) and page."""

    venue: Annotated[str, Text(32)] | None = None
    asset: Annotated[str, Text(64)] | None = None
    kind: Annotated[str, Text(32)] | None = None
    from_: Annotated[str, Text(10)] | None = Field(default=None, alias="from", description="A day, 2026-12-01.")
    to: Annotated[str, Text(10)] | None = Field(default=None, description="A day, included.")
    before: Id | None = None


class TriageForm(Form):
    """The first version's one-step form (take it / resolve / dismiss), kept for bookmarked pages."""

    status: Literal["assigned", "resolved", "dismissed"]
    resolution: Annotated[str, Text(5000)] = ""


class AuditQuery(Filters):
    """The audit page: newest first, ``before`` an event id for the next (older) page."""

    from_: UtcTime | None = Field(default=None, alias="from")
    to: UtcTime | None = None
    user_id: Id | None = None
    resource_type: Annotated[str, Text(64)] | None = None
    action: Annotated[str, Text(64)] | None = None
    before: Annotated[int, Whole(0, MAX_ID)] | None = None


class PeriodQuery(Filters):
    from_: UtcTime | None = Field(default=None, alias="from")
    to: UtcTime | None = None


# -- cases (web/cases.py) ------------------------------------------------------------------------------
# Text a person types stays text here: the services say what is wrong with it, and the page comes back
# with what was typed (a typo in a record number must not lose the form).

OptionalId = Annotated[Id | None, BeforeValidator(_blank_is_none)]


class AlertsQuery(Filters):
    status: Literal["open", "investigating", "resolved", "dismissed", "all", "assigned"] = "open"
    before: Id | None = None
    assigned_to: Id | None = None


class CaseCreateForm(Form):
    """A manual alert: from the queue, or from the employee page (``back``: show that page on a refusal)."""

    employee_id: OptionalId = None
    title: Annotated[str, Text(300)] = ""
    reason: Annotated[str, Text(10000)] = ""
    severity: Annotated[str, Text(16)] = ""
    back: OptionalId = None


class AssignForm(Form):
    user_id: OptionalId = None  # empty: nobody


class NoteForm(Form):
    text: Annotated[str, Text(10000)] = ""


class CaseStatusForm(Form):
    status: Annotated[str, Text(32)] = ""
    reason: Annotated[str, Text(10000)] = ""


class EvidenceForm(Form):
    type: Annotated[str, Text(16)] = ""
    ref_id: Annotated[str, Text(40)] = ""
    reference: Annotated[str, Text(500)] = ""
    note: Annotated[str, Text(500)] = ""


# -- lists, rules, groups (web/conduct.py) ---------------------------------------------------------------

class AudienceForm(Form):
    departments: Annotated[str, Text(10000)] = ""  # comma-separated
    groups: list[Id] = Field(default_factory=list, max_length=200)


class EntryForm(Form):
    type: Annotated[str, Text(32)] = ""
    value: Annotated[str, Text(500)] = ""
    effective_from: Annotated[str, Text(40)] = ""
    effective_to: Annotated[str, Text(40)] = ""
    note: Annotated[str, Text(2000)] = ""


class ListForm(AudienceForm, EntryForm):
    """A new list, with its first entry when a value is given."""

    name: Annotated[str, Text(200)] = ""
    kind: Annotated[str, Text(16)] = ""
    description: Annotated[str, Text(2000)] = ""
    watch_rule: Literal["1"] | None = None  # a checkbox


class RuleForm(AudienceForm):
    """A new rule: the fields of every kind (the view sends the service those of the chosen kind)."""

    name: Annotated[str, Text(200)] = ""
    kind: Annotated[str, Text(32)] = ""
    severity: Annotated[str, Text(16)] = ""
    list_id: Annotated[str, Text(20)] = ""
    days: Annotated[str, Text(20)] = "30"
    assets: Annotated[str, Text(10000)] = ""  # comma-separated
    include_predictions: Literal["1"] | None = None  # a checkbox
    start: Annotated[str, Text(40)] = ""
    end: Annotated[str, Text(40)] = ""
    value: Annotated[str, Text(64)] = ""
    on: list[Literal["trade", "transfer", "position", "holding"]] = Field(default_factory=list, max_length=4)
    direction: Annotated[str, Text(16)] = ""


class RuleEnabledForm(Form):
    enabled: Literal["0", "1"] = "0"


class GroupForm(Form):
    name: Annotated[str, Text(100)] = ""
    description: Annotated[str, Text(500)] = ""


class MembersForm(Form):
    employee_id: list[Id] = Field(default_factory=list, max_length=5000)


# -- administration ----------------------------------------------------------------------------------

class UserForm(Form):
    username: Annotated[str, Text(64)] = ""
    password: Annotated[str, Text(256)] = ""
    roles: list[Annotated[str, Text(64)]] = Field(default_factory=list, max_length=20)
    display_name: Annotated[str, Text(200)] = ""
    email: Annotated[str, Text(254)] = ""


class UserRolesForm(Form):
    roles: list[Annotated[str, Text(64)]] = Field(default_factory=list, max_length=20)


class UserActiveForm(Form):
    active: Literal["0", "1"]


class RoleForm(Form):
    """The permission matrix: perm=<resource:action> per ticked cell, scope_<resource> for the resources
    whose reads and exports can be limited to flagged records (SCOPED)."""

    description: Annotated[str, Text(500)] | None = None  # unchanged when the form does not send it
    perm: list[Annotated[str, Text(64)]] = Field(default_factory=list, max_length=200)
    scope_balances: Scope = "all"
    scope_transactions: Scope = "all"
    scope_predictions: Scope = "all"


class NewRoleForm(RoleForm):
    name: Annotated[str, Text(64)] = ""


if {f"scope_{resource}" for resource in SCOPED} - set(RoleForm.model_fields):
    raise RuntimeError("RoleForm lacks a scope_<resource> field for a scoped resource")  # a new SCOPED resource


class ApiKeyForm(Form):
    name: Annotated[str, Text(100)] = ""
    username: Annotated[str, Text(64)] = ""
    role: Annotated[str, Text(64)] = ""
    expires_days: Annotated[Annotated[int, Whole(1, 3650)] | None, BeforeValidator(_blank_is_none)] = None


class RotateForm(Form):
    overlap_hours: Annotated[Annotated[int, Whole(0, 168)] | None, BeforeValidator(_blank_is_none)] = None


# -- the employee's onboarding page ------------------------------------------------------------------

class OnboardQuery(Filters):
    venue: Annotated[str, Text(32)] | None = None


class OnboardForm(Form):
    """One form per step: a key (venue + its credential fields), a wallet (chain, address, label), or finish.
    Credential fields are named api_key, api_secret and passphrase for every venue (venues.base)."""

    action: Literal["key", "wallet", "finish"] = "key"
    venue: Annotated[str, Text(32)] = ""
    api_key: Annotated[str, Text(1000)] = ""
    api_secret: Annotated[str, Text(10000)] = ""  # a PEM private key for some venues
    passphrase: Annotated[str, Text(200)] = ""
    chain: Annotated[str, Text(32)] = ""
    address: Annotated[str, Text(200)] = ""
    label: Annotated[str, Text(200)] = ""


# -- the employee portal and pre-clearance ------------------------------------------------------------

class PortalSignInForm(Form):
    email: Annotated[str, Text(254)] = ""


class PortalDirectoryForm(Form):
    """The portal's directory sign-in: the person's directory user name and password."""

    username: Annotated[str, Text(128)] = ""
    password: Annotated[str, Text(1024)] = ""


class RosterRunForm(Form):
    """A roster dry run of one source."""

    source: Literal["ldap", "files"]


class RosterApplyForm(Form):
    """Apply the roster changes of the dry run that was reviewed (``digest`` names them)."""

    source: Literal["ldap", "files"]
    digest: Annotated[str, Text(64)]
    allow_mass_departures: Literal["", "1"] = ""


class PortalRequestForm(Form):
    asset: Annotated[str, Text(64)] = ""
    market_id: Annotated[str, Text(500)] = ""
    market_choice: Annotated[str, Text(200)] = ""
    venue: Annotated[str, Text(32)] = ""
    side: Annotated[str, Text(8)] = ""
    quantity: Annotated[str, Text(40)] = ""
    notional: Annotated[str, Text(40)] = ""
    reason: Annotated[str, Text(2000)] = ""


class PortalConnectionForm(Form):
    venue: Annotated[str, Text(32)] = ""


class PreclearanceQueueQuery(Filters):
    employee_id: Id | None = None


class PreclearanceDecisionForm(Form):
    decision: Literal["approve", "deny"] = "deny"
    comment: Annotated[str, Text(2000)] = ""
