"""The API's schemas for conduct: restricted and watch lists, employee groups, rules, and alerts worked
as cases (manual alerts, assignment, notes, evidence, status). Checked at the edge like every other
route's input (appliance/boundary/validation.py) and published in the OpenAPI document.

The schemas fix each field's type and length; the services keep the rules that need the database or the
rule's kind (a venue that exists, a list of the right kind, a date range in order, the parameters a kind
takes) and say what is wrong in their own words.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field

from appliance.api.schemas import example
from appliance.boundary.params import Id, Text, Timestamp, Whole
from appliance.boundary.validation import Answer, Schema
from appliance.services import alerts as alert_service
from appliance.services.rules import catalogue
from appliance.services.rules.matching import ENTRY_TYPES

ListKind = Literal["restricted", "watch"]
EntryType = Literal["asset", "venue", "market_text", "market_category", "market_id"]
RuleKind = Literal["restricted", "watch", "holding_period", "blackout", "threshold", "new_account",
                   "preclearance_required"]
Severity = Literal["info", "warning", "critical"]
CaseStatus = Literal["open", "investigating", "resolved", "dismissed"]
EvidenceType = Literal["transaction", "position", "balance", "alert", "reference", "preclearance"]
ThresholdOn = Literal["trade", "transfer", "position", "holding"]

for _declared, _served in ((EntryType, ENTRY_TYPES), (RuleKind, catalogue.KINDS), (Severity, catalogue.SEVERITIES),
                           (CaseStatus, alert_service.STATUSES), (EvidenceType, alert_service.EVIDENCE_TYPES),
                           (ThresholdOn, catalogue.THRESHOLD_ON)):
    if set(get_args(_declared)) != set(_served):
        raise RuntimeError(f"the schema's {_declared} differs from the service's {_served}")

DateText = Annotated[str, Text(40), Field(
    description="An ISO 8601 date or date-time (UTC unless it says otherwise), e.g. 2026-01-31 or "
                "2026-01-31T09:30:00Z. A bare date is the start of that day; as an end date, the end of it.")]
# services/rules/lists.MAX_ENTRIES_PER_CALL. A request one entry over it still fits the 2 MiB body limit, so it is
# refused with a 400 naming the field (not a 413).
MAX_ENTRIES = 1000
MAX_MEMBERS = 5000


class Audience(Schema):
    """Who a list or rule applies to: departments (matched case-insensitively) and named groups (ids or
    names). Both empty or left out: every employee."""

    departments: list[Annotated[str, Text(200)]] | None = Field(default=None, max_length=200)
    groups: list[Id | Annotated[str, Text(100)]] | None = Field(default=None, max_length=200)


class AudienceOut(Answer):
    departments: list[str]
    groups: list[int]


class EvaluationOut(Answer):
    """What the retroactive evaluation a change called for found."""

    rules: int
    employees: int
    transactions: int
    positions: int
    balances: int
    alerts_raised: int
    could_not_be_valued: int


class ChangeOut(Answer):
    """One version of a list, rule or group: who changed what, when."""

    version: int
    action: str
    detail: dict[str, Any]
    changed_at: Timestamp | None
    changed_by: str
    changed_by_id: int | None


# -- lists -------------------------------------------------------------------------------------------

class EntryIn(Schema):
    type: EntryType
    value: Annotated[str, Text(500)] = Field(description="A symbol (or chain:contract), a venue id, words matched "
                                                         "as whole words, a market category or a market id.")
    effective_from: DateText | None = None
    effective_to: DateText | None = None
    note: Annotated[str, Text(2000)] | None = Field(default=None, description="Why it is on the list (deal code, "
                                                                             "issuer).")


class ListCreate(Schema):
    model_config = example(name="Deals", kind="restricted", entries=[
        {"type": "asset", "value": "ACME", "effective_from": "2026-01-01", "note": "deal FALCON"}])

    name: Annotated[str, Text(200)]
    kind: ListKind
    entries: list[EntryIn] | None = Field(default=None, max_length=MAX_ENTRIES)
    description: Annotated[str, Text(2000)] | None = ""
    applies_to: Audience | None = None
    watch_rule: bool = Field(default=False, description="With a watch list: also create the watch rule that reads it "
                                                        "(a restricted list always gets its restricted rule).")


class ListUpdate(Schema):
    model_config = example(description="Deals in progress")

    name: Annotated[str, Text(200)] | None = None
    description: Annotated[str, Text(2000)] | None = None
    applies_to: Audience | None = None


class EntriesAdd(Schema):
    model_config = example(entries=[{"type": "market_text", "value": "Acme"}])

    entries: list[EntryIn] = Field(min_length=1, max_length=MAX_ENTRIES)


class EntryChange(Schema):
    """An entry's dates or note (its type and value identify it: remove it and add another to change
    those). A field left out is unchanged; null clears a date."""

    model_config = example(effective_to="2026-12-31")

    effective_from: DateText | None = None
    effective_to: DateText | None = None
    note: Annotated[str, Text(2000)] | None = None


class EntryOut(Answer):
    id: int
    type: str
    value: str
    effective_from: Timestamp | None
    effective_to: Timestamp | None
    note: str
    added_at: Timestamp | None
    added_by: str
    removed_at: Timestamp | None


class EntryChanged(EntryOut):
    evaluation: EvaluationOut


class RuleRef(Answer):
    id: int
    name: str
    kind: str


class ListOut(Answer):
    id: int
    name: str
    kind: str
    description: str
    applies_to: AudienceOut
    applies_to_text: str
    version: int
    created_at: Timestamp | None
    created_by: str
    updated_at: Timestamp | None
    updated_by: str
    entries: list[EntryOut]


class ListCreated(ListOut):
    rules: list[RuleRef] = Field(description="The rule the list enabled (a restricted list's, or the watch rule).")
    evaluation: EvaluationOut


class ListUpdated(ListOut):
    evaluation: EvaluationOut


class ListDetail(ListOut):
    history: list[ChangeOut]


class ListList(Answer):
    lists: list[ListOut]


class EntriesAdded(Answer):
    entries: list[EntryOut]
    evaluation: EvaluationOut


# -- groups ------------------------------------------------------------------------------------------

class GroupCreate(Schema):
    model_config = example(name="Deal team", description="Project FALCON", employee_ids=[1])

    name: Annotated[str, Text(100)]
    description: Annotated[str, Text(500)] | None = ""
    employee_ids: list[Id] | None = Field(default=None, max_length=MAX_MEMBERS)


class GroupUpdate(Schema):
    model_config = example(description="Project FALCON, phase 2")

    name: Annotated[str, Text(100)] | None = None
    description: Annotated[str, Text(500)] | None = None


class GroupMembers(Schema):
    model_config = example(employee_ids=[1])

    employee_ids: list[Id] = Field(min_length=1, max_length=MAX_MEMBERS)


class GroupSummary(Answer):
    id: int
    name: str
    description: str
    version: int
    created_at: Timestamp | None
    members: int


class Member(Answer):
    id: int
    name: str
    department: str


class GroupDetail(Answer):
    id: int
    name: str
    description: str
    version: int
    created_at: Timestamp | None
    members: list[Member]
    history: list[ChangeOut]


class GroupList(Answer):
    groups: list[GroupSummary]


class MembersAdded(Answer):
    added: list[int] = Field(description="The employees added (members already in are left as they are).")
    evaluation: EvaluationOut


class MemberRemoved(Answer):
    removed: int


# -- rules -------------------------------------------------------------------------------------------

class RuleParams(Schema):
    """The parameters of a rule; which ones a kind takes (the service refuses the others):

    - restricted, watch: ``list_id`` (a list of that kind);
    - holding_period: ``days`` (default 30), ``assets``?, ``include_predictions``?;
    - blackout: ``start``, ``end``, ``assets``?, ``list_id``? (neither: every asset);
    - threshold: ``value`` (in the base currency), ``on``? (default all four), ``currency``? (the base currency);
    - new_account: ``direction``? (both or outgoing);
    - preclearance_required: ``exempt_below``? (base currency), ``exempt_assets``?, ``include_predictions``?.
    """

    model_config = example(list_id=1)

    list_id: Id | None = None
    days: Annotated[int, Whole(1, 3650)] | None = None
    assets: list[Annotated[str, Text(64)]] | None = Field(default=None, max_length=1000)
    include_predictions: bool | None = None
    start: DateText | None = None
    end: DateText | None = None
    value: Annotated[str, Text(64)] | int | None = Field(
        default=None, description="A positive amount in the base currency, e.g. \"10000\".")
    on: list[ThresholdOn] | None = Field(default=None, max_length=4)
    currency: Annotated[str, Text(16)] | None = None
    direction: Literal["both", "outgoing"] | None = None
    exempt_below: Annotated[str, Text(64)] | int | None = Field(
        default=None, description="preclearance_required: trades below this value need no request.")
    exempt_assets: list[Annotated[str, Text(64)]] | None = Field(default=None, max_length=1000)


class RuleCreate(Schema):
    model_config = example(name="Holding period", kind="holding_period", params={"days": 30})

    name: Annotated[str, Text(200)]
    kind: RuleKind
    params: RuleParams | None = None
    applies_to: Audience | None = None
    severity: Severity | None = Field(default=None, description="Default: the kind's (restricted is always "
                                                                "critical, watch always info).")
    enabled: bool = True


class RuleUpdate(Schema):
    """A field left out is unchanged (the kind never changes)."""

    model_config = example(enabled=False)

    name: Annotated[str, Text(200)] | None = None
    params: RuleParams | None = None
    applies_to: Audience | None = None
    severity: Severity | None = None
    enabled: bool | None = None


class RulesEvaluate(Schema):
    model_config = example(rule_id=1)

    rule_id: Id | None = Field(default=None, description="One rule (default: every enabled rule).")
    employee_id: Id | None = Field(default=None, description="One employee (default: every employee).")


class RuleOut(Answer):
    id: int
    name: str
    kind: str
    params: dict[str, Any]
    severity: str
    enabled: bool
    applies_to: AudienceOut
    applies_to_text: str
    description: str = Field(description="What the rule checks, in one line.")
    alert_kind: Literal["rule_breach", "watch"]
    list_id: int | None
    list_name: str | None
    version: int
    created_at: Timestamp | None
    created_by: str
    updated_at: Timestamp | None
    updated_by: str
    evaluated_at: Timestamp | None


class RuleChanged(RuleOut):
    evaluation: EvaluationOut


class RuleDetail(RuleOut):
    history: list[ChangeOut]
    could_not_be_valued: int = Field(description="Records a threshold rule could not value yet.")


class RuleList(Answer):
    rules: list[RuleOut]


# -- alerts and cases --------------------------------------------------------------------------------

class AlertCaseQuery(Schema):
    status: Literal["open", "investigating", "resolved", "dismissed", "active", "assigned"] | None = Field(
        default=None, description="active: open and investigating; assigned: the old name of investigating.")
    employee_id: Id | None = None
    kind: Annotated[str, Text(64)] | None = None
    rule_id: Id | None = None
    assigned_to: Id | None = None
    limit: Annotated[int, Whole(1, 1000)] = 200
    before: Id | None = Field(default=None, description="Only alerts with a smaller id (the next page).")


class AlertCreate(Schema):
    """A manual alert on an employee: how compliance flags someone. The reason is required."""

    model_config = example(employee_id=1, title="Tip-off from the desk", reason="heard about a trade in ACME")

    employee_id: Id
    title: Annotated[str, Text(300)]
    reason: Annotated[str, Text(alert_service.MAX_NOTE)]
    severity: Severity = "warning"


class AlertAssign(Schema):
    model_config = example(user_id=1)

    user_id: Id | None = Field(description="A user who may triage alerts; null unassigns.")


class AlertNoteCreate(Schema):
    model_config = example(text="Asked for the pre-clearance form.")

    text: Annotated[str, Text(alert_service.MAX_NOTE)]


class AlertEvidenceCreate(Schema):
    model_config = example(type="reference", reference="TICKET-42", note="pre-clearance request")

    type: EvidenceType
    id: Id | None = Field(default=None, description="The transaction's, position's, balance's or alert's id (of the "
                                                    "alert's employee).")
    reference: Annotated[str, Text(500)] = Field(default="", description="A ticket, document or URL (type "
                                                                         "reference).")
    note: Annotated[str, Text(500)] = ""


class AlertStatusChange(Schema):
    model_config = example(status="resolved", reason="pre-cleared trade")

    status: CaseStatus = Field(description="open -> investigating -> resolved | dismissed; open again reopens.")
    reason: Annotated[str, Text(alert_service.MAX_NOTE)] | None = Field(
        default="", description="Required to close (resolved, dismissed) and to reopen.")


class NoteOut(Answer):
    id: int
    text: str
    author: str
    author_id: int | None
    created_at: Timestamp | None


class HistoryOut(Answer):
    at: Timestamp | None
    action: str
    actor: str
    actor_id: int | None
    detail: dict[str, Any]


class EvidenceOut(Answer):
    id: int
    type: str
    ref_id: int | None
    reference: str
    note: str
    added_by: str
    added_at: Timestamp | None


class CaseOut(Answer):
    id: int
    kind: str
    severity: str
    status: CaseStatus
    title: str
    employee_id: int | None
    employee_name: str | None
    connection_id: int | None
    detail: dict[str, Any] = Field(description="As the caller may see it: outside the employee's balances scope, "
                                               "the same keys without their values.")
    rule_id: int | None
    rule_name: str | None
    rule_version: int | None
    list_entry_id: int | None
    record_key: str | None
    occurred_at: Timestamp | None
    assigned_to: int | None
    assigned_to_name: str | None
    created_at: Timestamp
    created_by: int | None
    created_by_name: str | None
    reason: str
    updated_at: Timestamp | None
    resolved_at: Timestamp | None
    resolved_by_name: str | None
    resolution: str
    flagged_until: Timestamp | None = Field(description="A closed alert keeps its employee flagged until then.")


class CaseDetail(CaseOut):
    notes: list[NoteOut]
    history: list[HistoryOut]
    evidence: list[EvidenceOut]


class CaseList(Answer):
    alerts: list[CaseOut]
    next_before: int | None
