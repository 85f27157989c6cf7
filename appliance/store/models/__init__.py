"""All models, imported here so the metadata is complete for Alembic and the tests."""

from appliance.store.models.alerts import Alert, AlertEvent, AlertEvidence, AlertNote
from appliance.store.models.attestations import (
    AttestationCampaign,
    AttestationDeclaredAccount,
    AttestationDifference,
    AttestationManualEntry,
    AttestationReview,
    AttestationSubmission,
    AttestationTask,
    CodeAcknowledgement,
    CodeVersion,
)
from appliance.store.models.audit import AuditChainHead, AuditCheckpoint, AuditEvent
from appliance.store.models.auth import AuthRevision, LoginThrottle, RevokedSession
from appliance.store.models.conduct import (
    ConductChange,
    ConductList,
    EmployeeGroup,
    EmployeeGroupMember,
    EvaluationMark,
    ListEntry,
    Rule,
    UnvaluedRecord,
)
from appliance.store.models.connections import Connection, CoverageInterval, SyncCursor
from appliance.store.models.employees import Employee, OnboardingToken, RosterState
from appliance.store.models.holdings import BalanceSnapshot, PredictionPosition, StatementImport, Transaction
from appliance.store.models.identity import ApiKey, Role, RolePermission, User, UserRole
from appliance.store.models.keys import KeyVersion
from appliance.store.models.mail import MailOutbox
from appliance.store.models.portal import EmployeeSession, EmployeeSignInLink, PreclearanceMatch, PreclearanceRequest
from appliance.store.models.prices import CurrentPrice, PriceCandleDay, PriceObservation, TransactionValue
from appliance.store.models.system import PollCycle, Setting, StoreProbe
from appliance.store.models.values import EmployeeValue, EmployeeValueDay, FirmAssetValue, FirmValueDay

__all__ = [
    "Alert",
    "AlertEvent",
    "AlertEvidence",
    "AlertNote",
    "ApiKey",
    "AttestationCampaign",
    "AttestationDeclaredAccount",
    "AttestationDifference",
    "AttestationManualEntry",
    "AttestationReview",
    "AttestationSubmission",
    "AttestationTask",
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditEvent",
    "AuthRevision",
    "BalanceSnapshot",
    "CodeAcknowledgement",
    "CodeVersion",
    "ConductChange",
    "ConductList",
    "Connection",
    "CoverageInterval",
    "CurrentPrice",
    "Employee",
    "EmployeeGroup",
    "EmployeeGroupMember",
    "EmployeeSession",
    "EmployeeSignInLink",
    "EmployeeValue",
    "EmployeeValueDay",
    "EvaluationMark",
    "FirmAssetValue",
    "FirmValueDay",
    "KeyVersion",
    "ListEntry",
    "LoginThrottle",
    "MailOutbox",
    "OnboardingToken",
    "PollCycle",
    "PreclearanceMatch",
    "PreclearanceRequest",
    "PredictionPosition",
    "PriceCandleDay",
    "PriceObservation",
    "RevokedSession",
    "Role",
    "RolePermission",
    "RosterState",
    "Rule",
    "Setting",
    "StatementImport",
    "StoreProbe",
    "SyncCursor",
    "Transaction",
    "TransactionValue",
    "UnvaluedRecord",
    "User",
    "UserRole",
]
