"""The API's schemas: what each route accepts (checked, appliance/boundary/validation.py) and what it
answers (published in the OpenAPI document, appliance/api/openapi.py).

Limits follow the columns the values are stored in, so a value that passes can always be stored;
the services still apply their own rules (an e-mail's shape, a password's strength, a permission's
name) with their own messages.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, WithJsonSchema

from appliance.boundary.params import MAX_ID, DecimalText, Id, Text, Timestamp, UtcTime, Whole
from appliance.boundary.validation import Answer, Schema


def example(**values: Any) -> ConfigDict:
    """A request's example, published in the document (and the first request the fuzz run sends)."""
    return ConfigDict(json_schema_extra={"examples": [values]})


Username = Annotated[str, Text(64)]
RoleName = Annotated[str, Text(64)]
Permission = Annotated[str, Text(64)]
AlertStatus = Literal["open", "assigned", "resolved", "dismissed"]
TransferStatus = Literal["completed", "pending", "failed", "cancelled"]  # store.models.holdings.TRANSFER_STATUSES


# -- sign-in ---------------------------------------------------------------------------------------------

class TokenRequest(Schema):
    model_config = example(username="alice", password="correct horse battery staple")  # noqa: S106 (an example)

    username: Annotated[str, Text(128)]
    password: Annotated[str, Text(1024)]
    totp: Annotated[str, Text(16)] | None = None


class Token(Answer):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


# -- employees and what they hold --------------------------------------------------------------------

class EmployeeCreate(Schema):
    model_config = example(name="Ada Lovelace", email="ada@example.com", department="Research", external_id="HR-1",
                           access_person=True, access_person_since="2026-07-01")

    name: Annotated[str, Text(200)]
    email: Annotated[str, Text(254)]
    department: Annotated[str, Text(200)] = ""
    external_id: Annotated[str, Text(100)] | None = None
    access_person: bool = Field(default=False, description=(
        "An access person under the code of ethics (SEC Rule 204A-1): gets an initial-holdings task, due "
        "attestations.initial_due_days after access_person_since, and every campaign's tasks."))
    access_person_since: Annotated[str, Text(10)] | None = Field(
        default=None, description="YYYY-MM-DD, the day they became one (default: today). Only with access_person.")


class EmployeeUpdate(Schema):
    model_config = example(access_person=True, access_person_since="2026-07-01")

    access_person: bool = Field(description=(
        "Make the employee an access person (their initial-holdings task is created at once) or no longer one "
        "(their open and returned tasks are closed with reason no_longer_access_person)."))
    access_person_since: Annotated[str, Text(10)] | None = Field(
        default=None, description="YYYY-MM-DD, the day they became one: today or earlier (default: today in "
                                  "display.time_zone; unchanged for someone who already is one). Only with "
                                  "access_person true.")


class Employee(Answer):
    id: int
    name: str
    email: str
    department: str
    external_id: str | None
    status: Literal["active", "offboarded"]
    created_at: Timestamp
    offboarded_at: Timestamp | None
    access_person: bool
    access_person_since: Annotated[str, WithJsonSchema({"type": "string", "format": "date"})] | None


class EmployeeWithHealth(Employee):
    connections: int = Field(description="How many connections (exchange keys, wallets) the employee has.")
    connection_statuses: dict[str, int] = Field(description="Connections per status.")
    red: bool = Field(description="A connection is broken or needs re-onboarding.")


class EmployeeQuery(Schema):
    q: Annotated[str, Text(200)] | None = Field(
        default=None, description="Employees whose name, e-mail or department contains this (any case).")
    status: Literal["active", "offboarded"] | None = None
    red: Literal["yes", "no"] | None = Field(
        default=None, description="yes: only employees with a broken connection or one needing re-onboarding.")
    alerts: Literal["yes", "no"] | None = Field(
        default=None, description="yes: only employees with an open alert (needs alerts:read).")
    group: Id | None = Field(default=None, description="Only the members of this group (needs groups:read).")
    sort: Literal["name", "-name", "department", "-department", "status", "-status", "added", "-added"] = Field(
        default="name", description="The order; a leading - reverses it.")
    access_person: Literal["yes", "no"] | None = Field(
        default=None, description="yes: only access persons (code of ethics); no: only the others.")
    limit: Annotated[int, Whole(1, 1000)] = 100
    cursor: Annotated[str, Text(400)] | None = Field(
        default=None, description="The next_cursor of the previous answer (same search and sort).")


class ListedEmployee(EmployeeWithHealth):
    open_alerts: int | None = Field(description="Open or assigned alerts; null when the caller may not see alerts.")
    value: DecimalText | None = Field(
        description="What the employee holds, in `currency`, at the last valuation; null when the caller may not "
                    "see everyone's holdings or nothing was valued yet.")
    unpriced: int = Field(description="Holdings left out of `value` for want of a price.")
    value_as_of: Timestamp | None


class EmployeeList(Answer):
    employees: list[ListedEmployee]
    total: int = Field(description="Employees matching the search (all pages).")
    currency: str
    next_cursor: str | None = Field(description="Pass as `cursor` for the next employees; null after the last.")


class Overview(Answer):
    alerts_open: int | None = Field(description="Open and assigned alerts; null when the caller may not see alerts.")
    connections_red: int | None = Field(
        description="Connections broken or waiting for re-onboarding; null when the caller may not see connections.")
    value_total: DecimalText | None = Field(
        description="What the firm's employees hold, in `currency`, at the last valuation; null when the caller "
                    "may not see everyone's balances, or nothing was valued yet.")
    currency: str
    generated_at: Timestamp
    panels: dict[str, dict[str, Any]] = Field(
        description="Each panel the caller may see, by key, with its figures (times in UTC, amounts as decimal "
                    "strings).")


class CoverageGap(Answer):
    stream: str
    kind: str
    from_: Timestamp | None = Field(alias="from")
    to: Timestamp | None
    reason: str
    detail: str
    closed_at: Timestamp | None


class SyncProgress(Answer):
    stream: str
    done: int = Field(description="History windows read so far.")
    total: int = Field(description="History windows the first sync plans to read.")
    percent: int
    at: str | None = Field(description="When the progress was last recorded.")


class StatementImportOut(Answer):
    id: int
    format: str = Field(description='The export read, e.g. "coinbase_transactions" or "kraken_ledgers".')
    file_name: str | None = Field(description="The file's name (null outside the caller's balances scope).")
    covered_from: Timestamp | None
    covered_to: Timestamp | None
    rows: int
    added: int
    duplicates: int = Field(description="Records already recorded (synced or imported before), skipped.")
    created_at: Timestamp | None


class ConnectionOut(Answer):
    id: int
    employee_id: int
    kind: str
    venue: str
    label: str
    status: str
    status_reason: str
    address: str | None
    key_fingerprint: str | None
    scope_verified: bool
    scope: dict[str, Any]
    scope_label: str = Field(description='What the scope probe found, e.g. "read-only, verified" or "rejected: trade".')
    scope_checked_at: Timestamp | None
    last_success_at: Timestamp | None
    last_attempt_at: Timestamp | None
    last_error_class: str | None
    last_error: str | None
    consecutive_failures: int
    created_at: Timestamp | None
    coverage: list[CoverageGap]
    progress: list[SyncProgress] = Field(description="Streams still in a first sync over history windows.")
    statement_imports: list[StatementImportOut] = Field(description="The latest statement imports (at most 10).")
    accepts_statements: bool = Field(description="Statement exports of this venue can be imported.")


class ConnectionList(Answer):
    connections: list[ConnectionOut]


class ValueFields(Answer):
    """A value in the firm's currency (api/values.py, docs/VALUATION.md): null with a reason, never 0."""

    value: DecimalText | None = Field(description="Quantity times price, in the answer's currency.")
    price_source: str | None
    price_route: str | None
    priced_at: Timestamp | None
    unpriced_reason: str | None = Field(description="Why there is no value (null when there is one).")


class Valued(ValueFields):
    price: DecimalText | None = Field(description="Per unit, in the answer's currency.")


class Total(Answer):
    value: DecimalText
    priced: int
    unpriced: int
    complete: bool = Field(description="Every item is priced.")


Currency = Annotated[str, Field(description="The firm's currency (valuation.currency).")]


class Balance(Valued):
    connection_id: int
    venue: str
    asset: str
    account: str
    amount: DecimalText
    valid_from: Timestamp
    observed_until: Timestamp
    provenance: str


class BalanceList(Answer):
    currency: Currency
    balances: list[Balance]
    total: Total


class TransactionQuery(Schema):
    from_: UtcTime | None = Field(default=None, alias="from", description="From this time (inclusive).")
    to: UtcTime | None = Field(default=None, description="Until this time (exclusive).")
    limit: Annotated[int, Whole(1, 5000)] = 500
    before: Id | None = Field(default=None, description="Only transactions with a smaller id (the next page).")


class PreclearanceOutcome(Answer):
    """How post-trade matching judged a trade (docs/PRECLEARANCE.md)."""

    status: Literal["matched", "over_quantity", "outside_window", "no_request", "unvalued"]
    request_id: int | None


class TransactionOut(Valued):
    """A transaction: ``price`` is the valuation's (in the answer's currency), ``trade_price`` the trade's own."""

    id: int
    connection_id: int
    venue: str
    stream: str
    venue_tx_id: str
    kind: str
    occurred_at: Timestamp
    asset: str
    amount: DecimalText
    market: str
    quote_asset: str | None
    quote_amount: DecimalText | None
    trade_price: DecimalText | None = Field(description="The trade's own price, in its quote asset, as the venue "
                                                        "reported it (``price`` is the valuation's, in the "
                                                        "answer's currency).")
    fee_asset: str | None
    fee_amount: DecimalText | None
    provenance: str = Field(description="Where the record came from: api, chain, statement...")
    orphaned: bool
    block_number: int | None
    status: TransferStatus = Field(description="The venue's transfer status. Only completed transactions count in "
                                               "balances, reconciliation, values' totals and reports; a pending one "
                                               "is updated when the venue reports its outcome.")
    status_changed_at: Timestamp | None = Field(description="When a pending transaction got its outcome.")
    statement_import_id: int | None = Field(description="The statement import that added it (provenance statement).")
    preclearance: PreclearanceOutcome | None = Field(description="How post-trade matching judged it (null: not a "
                                                                 "trade, or not matched yet).")


class TransactionList(Answer):
    currency: Currency
    transactions: list[TransactionOut]
    next_before: int | None


class OneTransaction(TransactionOut):
    currency: Currency


class Position(Valued):
    connection_id: int
    employee_id: int
    venue: str
    market_id: str
    market_title: str
    category: str
    outcome: str
    size: DecimalText
    avg_price: DecimalText | None
    current_value: DecimalText | None
    valid_from: Timestamp
    observed_until: Timestamp


class PositionList(Answer):
    currency: Currency
    positions: list[Position]


class LinkCreate(Schema):
    model_config = example(purpose="initial")

    purpose: Literal["initial", "reonboard"] = "initial"


class Link(Answer):
    id: int
    employee_id: int
    purpose: Literal["initial", "reonboard"]
    expires_at: Timestamp
    url: str = Field(description="The one-time link; shown once, never stored.")


class LinkRevoked(Answer):
    id: int
    state: str


class ImportedRow(Answer):
    where: str = Field(description="The row: 'line N' of the CSV.")
    kind: Literal["created", "updated", "unchanged", "rejected"]
    email: str
    employee_id: int | None
    reason: str = Field(description="Why a row was rejected ('' otherwise).")
    fields: list[list[str]] = Field(description="Changed fields of a created or updated row: [field, old, new].")


class Imported(Answer):
    imported: int = Field(description="Rows created or updated.")
    ids: list[int] = Field(description="Ids of the employees created or updated.")
    created: int
    updated: int
    unchanged: int
    rejected: int
    rows: list[ImportedRow]


class SyncRequested(Answer):
    id: int
    next_poll_at: Timestamp | None


# -- alerts (cases: api/conduct_schemas.py) ---------------------------------------------------------------

class AlertTriage(Schema):
    model_config = example(status="resolved", resolution="pre-cleared trade")

    status: Literal["assigned", "resolved", "dismissed"]
    resolution: Annotated[str, Text(5000)] = Field(
        default="", description="Why the alert is closed (required to resolve or dismiss).")


# -- audit -----------------------------------------------------------------------------------------------

class AuditQuery(Schema):
    from_: UtcTime | None = Field(default=None, alias="from", description="From this time (inclusive).")
    to: UtcTime | None = Field(default=None, description="Until this time (exclusive).")
    user_id: Id | None = None
    resource_type: Annotated[str, Text(64)] | None = None
    action: Annotated[str, Text(64)] | None = None
    format: Literal["json", "csv"] | None = Field(
        default=None, description="csv streams every matching event (needs audit:export); default: the Accept "
                                  "header, else JSON pages.")
    limit: Annotated[int, Whole(1, 1000)] = 100
    order: Literal["oldest", "newest"] = Field(
        default="oldest", description="oldest (the default): id order, oldest first, the next page from "
                                      "next_after — what a SIEM pulling the trail incrementally wants; newest: "
                                      "newest first like the dashboard, the next (older) page from next_before.")
    after: Annotated[int, Whole(0, MAX_ID)] | None = Field(
        default=None, description="order=oldest: only events after this id (the next page).")
    before: Annotated[int, Whole(0, MAX_ID)] | None = Field(
        default=None, description="order=newest: only events before this id (the next page).")


class AuditEventOut(Answer):
    user_id: int | None
    action: str
    resource_type: str
    resource_id: str
    ip_address: str
    timestamp: Timestamp
    id: int
    actor_type: str
    api_key_id: int | None
    request_id: str
    method: str
    path: str
    status: int | None
    user_agent: str
    outcome: str
    detail: str
    prev_hash: str
    hash: str


class AuditPage(Answer):
    events: list[AuditEventOut] = Field(description="In the order asked for: id order (oldest first) by default.")
    next_after: int | None = Field(description="order=oldest: the `after` of the next page; null on the last.")
    next_before: int | None = Field(description="order=newest: the `before` of the next page; null on the last.")


# -- users, roles, API keys ------------------------------------------------------------------------------

class UserCreate(Schema):
    model_config = example(username="dora", password="long enough to be a passphrase",  # noqa: S106 (an example)
                           roles=["Viewer"], display_name="Dora", email="dora@example.com")

    username: Username
    password: Annotated[str, Text(256)]
    roles: list[RoleName] = Field(default_factory=list, max_length=20)
    display_name: Annotated[str, Text(200)] = ""
    email: Annotated[str, Text(254)] = ""
    must_change_password: bool = True


class UserRoles(Schema):
    model_config = example(roles=["Compliance"])

    roles: list[RoleName] = Field(max_length=20)


class UserActive(Schema):
    model_config = example(active=True)

    active: bool


class UserOut(Answer):
    id: int
    username: str
    display_name: str
    email: str
    active: bool
    roles: list[str]
    mfa_enabled: bool
    last_login_at: Timestamp | None
    created_at: Timestamp
    locked_until: Timestamp | None


class UserList(Answer):
    users: list[UserOut]


class RoleCreate(Schema):
    model_config = example(name="HR readers", permissions=["employees:read"], description="HR sees who is monitored")

    name: RoleName
    permissions: list[Permission] = Field(default_factory=list, max_length=200)
    description: Annotated[str, Text(500)] = ""


class RoleUpdate(Schema):
    model_config = example(permissions=["employees:read", "reports:read"])

    permissions: list[Permission] = Field(max_length=200, description="The role's permissions from now on.")
    description: Annotated[str, Text(500)] | None = Field(default=None, description="Unchanged when left out.")


class RoleOut(Answer):
    id: int
    name: str
    description: str
    builtin: bool
    permissions: list[str]


class RoleList(Answer):
    roles: list[RoleOut]


class RoleDeleted(Answer):
    deleted: int


class ApiKeyCreate(Schema):
    model_config = example(username="carol", name="siem", role="Compliance", expires_at="2030-01-01T00:00:00Z")

    username: Username = Field(description="The key's owner.")
    name: Annotated[str, Text(100)]
    role: RoleName | None = Field(default=None, description="The role the key is bound to (default: the owner's "
                                                            "only role).")
    expires_at: UtcTime | None = None


class ApiKeyRotate(Schema):
    model_config = example(overlap_hours=24)

    overlap_hours: Annotated[int, Whole(0, 168)] = Field(
        default=0, description="How long the previous secret stays valid.")


class ApiKeyOut(Answer):
    id: int
    name: str
    prefix: str
    user_id: int
    role_id: int
    created_at: Timestamp
    expires_at: Timestamp | None
    last_used_at: Timestamp | None
    rotated_at: Timestamp | None
    revoked_at: Timestamp | None
    status: Literal["active", "stale", "expired", "revoked"] = Field(
        description="stale: the owner's password, roles or state changed since the key was issued or rotated, so "
                    "it no longer authenticates until rotated again.")


class ApiKeyWithSecret(ApiKeyOut):
    api_key: str = Field(description="The key itself: shown once, never stored.")


class ApiKeyRotated(ApiKeyOut):
    api_key: str | None = Field(description="The new secret, shown once and to the key's owner only; null when "
                                            "someone else rotated the key (its old secret is dead either way).")
    message: str | None = Field(default=None, description="Why api_key is null, when it is.")


class ApiKeyList(Answer):
    api_keys: list[ApiKeyOut]
