"""Schemas of the attestation routes: campaigns, tasks, the late list, submissions and their review, the code
of ethics (checked by appliance/boundary/validation.py, published in the OpenAPI document). The services
check kinds, periods and dates themselves, with messages that name the field."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from appliance.api.schemas import example
from appliance.boundary.params import Text, Timestamp, Whole
from appliance.boundary.validation import Answer, Schema

Date = Annotated[str, WithJsonSchema({"type": "string", "format": "date"})]
TaskStatus = Literal["open", "submitted", "approved", "returned", "late", "closed"]


class CampaignCreate(Schema):
    model_config = example(kind="quarterly_transactions", period="2026Q3", due="2026-10-30")

    kind: Annotated[str, Text(32)] = Field(description=(
        "initial_holdings | quarterly_transactions | annual_holdings | code_acknowledgement"))
    period: Annotated[str, Text(8)] | None = Field(
        default=None, description="A quarter (2026Q3) for quarterly transactions, a year (2026) for annual holdings, "
                                  "null for the others.")
    due: Annotated[str, Text(10)] | None = Field(
        default=None, description="YYYY-MM-DD. Default: quarter end + 30 days, the configured annual date, "
                                  "10 days after becoming an access person, 10 days from now for an acknowledgement.")


class TaskOut(Answer):
    id: int
    campaign_id: int
    employee_id: int
    employee_name: str
    due: Date
    as_of: Date | None
    status: TaskStatus = Field(description="late: open or returned past its due date.")
    days_late: int | None = Field(description="Days past due (still outstanding), or days late it was filed.")
    closed_reason: str | None = Field(description="offboarded | no_longer_access_person (closed tasks).")
    submitted_at: Timestamp | None
    reviewed_at: Timestamp | None


class CampaignOut(Answer):
    id: int
    kind: str
    period: str | None
    period_start: Date | None
    period_end: Date | None
    as_of: Date | None
    due: Date | None
    title: str
    code_version: int | None
    created_at: Timestamp
    created_by: str
    progress: dict[str, int] = Field(description="Tasks per status.")
    tasks: list[TaskOut] | None = Field(default=None, description="The tasks (one campaign only).")


class CampaignList(Answer):
    campaigns: list[CampaignOut]


class LateOut(Answer):
    task: TaskOut
    campaign_id: int
    campaign_title: str
    days_late: int
    outstanding: bool = Field(description="true: still not filed; false: filed after its due date.")


class LateList(Answer):
    late: list[LateOut]


class SubmissionQuery(Schema):
    status: Literal["submitted", "approved", "returned"] | None = "submitted"
    limit: Annotated[int, Whole(1, 1000)] = 200


class SubmissionOut(Answer):
    id: int
    task_id: int
    campaign_id: int
    campaign_title: str
    employee_id: int
    employee_name: str
    number: int
    status: Literal["submitted", "approved", "returned"]
    submitted_at: Timestamp
    nothing_to_report: bool
    snapshot_sha256: str
    review_alert_id: int | None = Field(description="The alert that flags the employee for this review.")
    snapshot: dict[str, Any] | None = Field(default=None, description="The frozen certification (one submission).")


class SubmissionList(Answer):
    submissions: list[SubmissionOut]


class ReviewDecision(Schema):
    model_config = example(approve=False, comment="Please add the wallet you mentioned in Q2.")

    approve: bool
    comment: Annotated[str, Text(5000)] = ""


class CodeUpload(Schema):
    model_config = example(title="Code of Ethics 2026", text="1. Access persons report ...")

    title: Annotated[str, Text(200)]
    text: Annotated[str, Text(2_000_000)] = Field(description=(
        "The code as UTF-8 text, line breaks allowed (a PDF is uploaded on the Attestations page)."))
    due: Annotated[str, Text(10)] | None = None


class CodeVersionOut(Answer):
    id: int
    version: int
    title: str
    media_type: str
    sha256: str
    size: int
    uploaded_at: Timestamp
    campaign_id: int | None


class MyTaskOut(Answer):
    id: int
    title: str
    kind: str
    period: str | None
    due: Date
    as_of: Date | None
    status: TaskStatus
    days_late: int | None
    comment: str | None = Field(description="Compliance's comment when the report was returned.")
    content: dict[str, Any] | None = Field(default=None, description=(
        "What the task covers now: connected accounts, synced records, declared accounts, manual entries."))


class MyTaskList(Answer):
    tasks: list[MyTaskOut]


class Certify(Schema):
    model_config = example(typed_name="Ada Lovelace", nothing_to_report=False, confirm=True)

    typed_name: Annotated[str, Text(200)]
    nothing_to_report: bool = False
    confirm: bool = Field(default=True, description="The employee confirms the report is complete and accurate.")


class DeclaredCreate(Schema):
    model_config = example(venue="Coinbase", account="personal", reason="the key cannot be read-only")

    venue: Annotated[str, Text(100)]
    account: Annotated[str, Text(200)] = ""
    reason: Annotated[str, Text(2000)]


class ManualCreate(Schema):
    model_config = example(asset="BTC", quantity="0.1", venue="cold wallet", date="2026-08-14", nature="buy")

    asset: Annotated[str, Text(64)]
    identifier: Annotated[str, Text(200)] = ""
    quantity: Annotated[str, Text(40)]
    price: Annotated[str, Text(40)] | None = None
    principal: Annotated[str, Text(40)] | None = None
    venue: Annotated[str, Text(100)]
    date: Annotated[str, Text(10)] | None = Field(default=None, description="YYYY-MM-DD (transactions).")
    nature: Annotated[str, Text(24)] = Field(default="", description=(
        "buy | sell | other_acquisition | other_disposition (transactions)."))
    note: Annotated[str, Text(2000)] = ""


class SubmittedOut(Answer):
    submission_id: int
    number: int
    status: str
    snapshot_sha256: str
    submitted_at: Timestamp


class CreatedOut(Answer):
    id: int
