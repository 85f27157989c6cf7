"""The JSON API under /api/v1: one module per resource, one error shape (boundary.errors)."""

from __future__ import annotations

from flask import Blueprint

api_blueprint = Blueprint("api", __name__)

from appliance.api import (  # noqa: E402,F401  (the routes)
    admin,
    alerts,
    attestations,
    audit,
    auth,
    employees,
    firm,
    lists,
    me,
    me_tasks,
    openapi,
    oversight,
    preclearance,
    reports,
    rules,
)
