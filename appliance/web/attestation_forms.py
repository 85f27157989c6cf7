"""The forms of the attestation pages (Compliance's and the employee portal's), checked like every form
(appliance/web/forms.py); the services check kinds, periods, dates and amounts with their own messages."""

from __future__ import annotations

from typing import Annotated, Literal

from appliance.boundary.params import Id, Text
from appliance.boundary.validation import FileStorage
from appliance.web.forms import Day, Form


class CampaignForm(Form):
    kind: Annotated[str, Text(32)] = ""
    period: Annotated[str, Text(8)] = ""
    due: Day = None


class CodeForm(Form):
    """A new version of the code of ethics: a PDF or text file, or text pasted."""

    title: Annotated[str, Text(200)] = ""
    file: FileStorage | None = None
    due: Day = None


class DecisionForm(Form):
    decision: Literal["approve", "return"] = "return"
    comment: Annotated[str, Text(5000)] = ""


class DeclaredForm(Form):
    venue: Annotated[str, Text(100)] = ""
    account: Annotated[str, Text(200)] = ""
    reason: Annotated[str, Text(2000)] = ""


class ManualForm(Form):
    asset: Annotated[str, Text(64)] = ""
    identifier: Annotated[str, Text(200)] = ""
    quantity: Annotated[str, Text(40)] = ""
    price: Annotated[str, Text(40)] = ""
    principal: Annotated[str, Text(40)] = ""
    venue: Annotated[str, Text(100)] = ""
    date: Day = None
    nature: Annotated[str, Text(24)] = ""
    note: Annotated[str, Text(2000)] = ""


class RemoveForm(Form):
    what: Literal["declared", "manual"] = "manual"
    row_id: Id


class CertifyForm(Form):
    typed_name: Annotated[str, Text(200)] = ""
    nothing_to_report: Literal["", "yes"] = ""
    confirm: Literal["", "yes"] = ""
