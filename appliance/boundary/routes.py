"""Every route declares its permission; the app refuses to start if one does not.

``@requires("employees:read")`` guards a view with a permission from the catalogue; ``@public``
marks the few routes anyone may call (login, health, static files, onboarding by token);
``@signed_in`` marks pages any logged-in user may see (home, their own account, logout) — these
show nothing that needs a permission; ``@signed_in(while_restricted=True)`` marks the few a user may
still use while they owe a password change or an MFA enrolment (the pages that settle it, and sign-out).
``@employee_portal`` marks the employee portal's routes: only an employee session passes them, and an
employee session passes nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask

from appliance.rbac.permissions import parse

PUBLIC = "public"
SIGNED_IN = "signed-in"
# The employee portal: an employee session only (a dashboard user, API key or token is refused).
EMPLOYEE = "employee-session"
F = TypeVar("F", bound=Callable[..., Any])

# Flask's own endpoints that are public by nature.
BUILTIN_PUBLIC_ENDPOINTS = frozenset({"static"})


@dataclass(frozen=True)
class RouteSpec:
    permission: str
    action: str | None = None  # audit action; default: the endpoint name
    resource_arg: str | None = None  # view argument holding the resource id
    accepts_data_anonymously: bool = False  # public routes that take input (login, onboarding)
    while_restricted: bool = False  # usable by a user who must first change their password or enrol MFA


def requires(permission: str, *, action: str | None = None, resource_arg: str | None = None) -> Callable[[F], F]:
    parse(permission)  # a typo fails at import time, not at request time

    def mark(fn: F) -> F:
        fn.vigatra_route = RouteSpec(permission, action, resource_arg)  # type: ignore[attr-defined]
        return fn

    return mark


def public(*, accepts_data: bool = False, action: str | None = None) -> Callable[[F], F]:
    def mark(fn: F) -> F:
        fn.vigatra_route = RouteSpec(PUBLIC, action, None, accepts_data)  # type: ignore[attr-defined]
        return fn

    return mark


def signed_in(*, action: str | None = None, while_restricted: bool = False) -> Callable[[F], F]:
    def mark(fn: F) -> F:
        fn.vigatra_route = RouteSpec(SIGNED_IN, action, while_restricted=while_restricted)  # type: ignore[attr-defined]
        return fn

    return mark


def employee_portal(*, action: str | None = None, resource_arg: str | None = None) -> Callable[[F], F]:
    """Routes of the employee portal (/me, /api/v1/me/...): an employee session only."""
    def mark(fn: F) -> F:
        fn.vigatra_route = RouteSpec(EMPLOYEE, action, resource_arg)  # type: ignore[attr-defined]
        return fn

    return mark


def spec_for(app: Flask, endpoint: str | None) -> RouteSpec | None:
    if endpoint is None:
        return None
    if endpoint in BUILTIN_PUBLIC_ENDPOINTS:
        return RouteSpec(PUBLIC)
    view = app.view_functions.get(endpoint)
    return getattr(view, "vigatra_route", None)


class UndeclaredRoute(RuntimeError):
    pass


def check_declared(app: Flask) -> None:
    missing = [rule.rule for rule in app.url_map.iter_rules() if spec_for(app, rule.endpoint) is None]
    if missing:
        raise UndeclaredRoute(f"routes without a declared permission: {', '.join(sorted(missing))}")


@dataclass(frozen=True)
class RouteRow:
    methods: tuple[str, ...]
    rule: str
    endpoint: str
    permission: str
    accepts_data_anonymously: bool


def route_table(app: Flask) -> list[RouteRow]:
    rows = []
    for rule in app.url_map.iter_rules():
        spec = spec_for(app, rule.endpoint)
        if spec is None:
            raise UndeclaredRoute(f"route {rule.rule} has no declared permission")
        methods = tuple(sorted(m for m in (rule.methods or ()) if m not in ("HEAD", "OPTIONS")))
        rows.append(RouteRow(methods, rule.rule, rule.endpoint, spec.permission, spec.accepts_data_anonymously))
    return sorted(rows, key=lambda r: (r.rule, r.methods))
