"""All models, imported here so the metadata is complete for Alembic and the tests."""

from appliance.store.models.alerts import Alert
from appliance.store.models.audit import AuditChainHead, AuditCheckpoint, AuditEvent
from appliance.store.models.auth import AuthRevision, LoginThrottle, RevokedSession
from appliance.store.models.connections import Connection, CoverageInterval, SyncCursor
from appliance.store.models.employees import Employee, OnboardingToken
from appliance.store.models.holdings import BalanceSnapshot, PredictionPosition, Transaction
from appliance.store.models.identity import ApiKey, Role, RolePermission, User, UserRole
from appliance.store.models.keys import KeyVersion
from appliance.store.models.prices import CurrentPrice, PriceCandleDay, PriceObservation, TransactionValue
from appliance.store.models.system import PollCycle, Setting
from appliance.store.models.values import EmployeeValue, EmployeeValueDay, FirmAssetValue, FirmValueDay

__all__ = [
    "Alert",
    "ApiKey",
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditEvent",
    "AuthRevision",
    "BalanceSnapshot",
    "Connection",
    "CoverageInterval",
    "CurrentPrice",
    "Employee",
    "EmployeeValue",
    "EmployeeValueDay",
    "FirmAssetValue",
    "FirmValueDay",
    "KeyVersion",
    "LoginThrottle",
    "OnboardingToken",
    "PollCycle",
    "PredictionPosition",
    "PriceCandleDay",
    "PriceObservation",
    "RevokedSession",
    "Role",
    "RolePermission",
    "Setting",
    "SyncCursor",
    "Transaction",
    "TransactionValue",
    "User",
    "UserRole",
]
