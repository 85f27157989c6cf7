"""The server-rendered UI (Jinja templates, local assets only)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request, url_for

from appliance import __version__
from appliance.boundary.csrf import csrf_token
from appliance.boundary.edge import appliance, current_state
from appliance.web import charts, display, words

web_blueprint = Blueprint("web", __name__)
display.install(web_blueprint, lambda: appliance().settings.display.time_zone)
web_blueprint.add_app_template_global(charts.bar_chart, "bar_chart")
web_blueprint.add_app_template_global(charts.line_chart, "line_chart")
web_blueprint.app_context_processor(lambda: {"status_words": words.STATUS_WORDS, "error_words": words.ERROR_WORDS})


# (endpoint, label, permission) in menu order; an item shows only to actors holding its permission.
# Holding the permission at any scope shows the item (a flagged-scope reader sees the flagged employees' records).
NAV: tuple[tuple[str, str, str], ...] = (
    ("web.employees", "Employees", "employees:read"),
    ("web.alerts", "Alerts", "alerts:read"),
    ("web.preclearance_queue", "Pre-clearance", "preclearance:read"),
    ("web.attestations_page", "Attestations", "attestations:read"),
    ("web.lists_page", "Lists", "lists:read"),
    ("web.rules_page", "Rules", "rules:read"),
    ("web.groups_page", "Groups", "groups:read"),
    ("web.holdings_page", "Holdings", "balances:read"),
    ("web.large_trades_page", "Large trades", "transactions:read"),
    ("web.predictions", "Predictions", "predictions:read"),
    ("web.reports_page", "Reports", "reports:read"),
    ("web.audit", "Audit", "audit:read"),
    ("web.roster_page", "Roster", "employees:write"),
    ("web.users", "Users", "users:read"),
    ("web.roles", "Roles", "roles:read"),
    ("web.apikeys", "API keys", "apikeys:read"),
    ("web.system", "System", "system:read"),
)


@web_blueprint.app_context_processor
def _inject() -> dict[str, Any]:
    from flask import current_app

    st = current_state()
    actor = st.actor if st is not None else None
    nav = []
    if actor is not None and actor.is_authenticated:
        for endpoint, label, permission in NAV:
            if endpoint in current_app.view_functions and actor.scope_for(permission) is not None:
                nav.append({"url": url_for(endpoint), "label": label, "current": request.endpoint == endpoint})
    # "password" | "mfa" while the signed-in user owes that first: every page but the account's refuses them.
    restricted = st.restricted if st is not None else None
    return {"actor": actor, "nav": nav, "csrf_token": csrf_token, "version": __version__, "restricted": restricted}


from appliance.web import (  # noqa: E402,F401  (register the routes)
    admin,
    attestations,
    cases,
    conduct,
    employees,
    filings,
    firm,
    onboarding,
    oversight,
    portal,
    portal_directory,
    portal_tasks,
    preclearance,
    roster,
    sso,
    views,
)
