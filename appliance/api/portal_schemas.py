"""Schemas of the employee portal's API and of pre-clearance (checked by appliance/boundary/validation.py,
published in the OpenAPI document). The services apply their own rules with their own messages (an
asset's shape, a side that fits the kind of request, exactly one of quantity and notional)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from appliance.api.schemas import example
from appliance.boundary.params import DecimalText, Id, Text, Timestamp, Whole
from appliance.boundary.validation import Answer, Schema

Amount = Annotated[str, Text(40)] | Annotated[int, Whole(1, 10**15)] | float


class MeTransactionQuery(Schema):
    limit: Annotated[int, Whole(1, 5000)] = 500
    before: Id | None = Field(default=None, description="Only transactions with a smaller id (the next page).")


class PreclearanceCreate(Schema):
    model_config = example(employee_id=1, asset="BTC", side="buy", quantity="0.5", reason="savings plan")

    employee_id: Id | None = Field(default=None, description="The employee (dashboard only; the portal's own).")
    asset: Annotated[str, Text(64)] | None = None
    market_id: Annotated[str, Text(500)] | None = Field(
        default=None, description="A market id (a Polymarket condition id, a Kalshi ticker) or a polymarket.com or "
                                  "kalshi.com URL.")
    market_choice: Annotated[str, Text(200)] | None = Field(
        default=None, description="With a Polymarket event URL naming several markets: the chosen market's slug or "
                                  "condition id (the error lists them).")
    venue: Annotated[str, Text(32)] | None = None
    side: Annotated[str, Text(8)] = Field(description="buy or sell (assets); yes or no (markets).")
    quantity: Amount | None = None
    notional: Amount | None = Field(default=None, description="In the base currency, instead of quantity.")
    reason: Annotated[str, Text(2000)] | None = None


class PreclearanceDecision(Schema):
    model_config = example(approve=True, comment="within policy")

    approve: bool
    comment: Annotated[str, Text(2000)]


class PreclearanceQuery(Schema):
    status: Literal["pending", "approved", "denied"] | None = None
    employee_id: Id | None = None
    limit: Annotated[int, Whole(1, 5000)] = 500


class PreclearanceOut(Answer):
    """A pre-clearance request and its decision. ``reason`` is what the employee is told (the rule that denied
    it, an automatic approval, the reviewer's decision); ``request_reason`` the employee's own words."""

    id: int
    employee_id: int
    kind: Literal["asset", "market"]
    asset: str | None
    market_id: str | None
    venue: str | None
    side: str
    quantity: DecimalText | None
    notional: DecimalText | None
    currency: str | None
    reason: str | None
    request_reason: str | None
    status: Literal["pending", "approved", "denied"]
    decided_how: str | None
    decided_at: Timestamp | None
    comment: str | None
    valid_from: Timestamp | None
    expires_at: Timestamp | None
    tolerance_percent: DecimalText | None
    submitted_via: str
    created_at: Timestamp


class PreclearanceList(Answer):
    preclearances: list[PreclearanceOut]
