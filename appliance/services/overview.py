"""The overview a compliance officer opens every morning (``/`` and ``/api/v1/overview``): a registry of panels.

A panel is a title, who may see it and a function that gathers its figures. Each lives in a module of
``appliance/services/panels/`` that registers it with :func:`panel`; every module of that package is loaded, so
a later feature (pre-clearance, certifications) adds its panel — a module here and a template
``web/templates/panels/<key>.html`` — without touching this module, the routes or the home page.

A panel's figures are plain data (numbers, Decimals, UTC datetimes, lists and dicts of them): the API serialises
them as they are, the page renders them with the panel's template. Some figures are the overview's headline,
named at the top of the API's answer (``alerts_open``, ``connections_red``, ``value_total``): a panel lists them
in ``headline``. A panel the caller may not see is not built at all, so its figures (and their queries) never
exist for that caller.
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from appliance.rbac.actors import Actor
from appliance.settings import Settings
from appliance.store.base import utcnow


@dataclass(frozen=True)
class Context:
    session: Session
    actor: Actor
    settings: Settings
    now: dt.datetime


@dataclass(frozen=True)
class Panel:
    key: str  # the template's name (panels/<key>.html) and the API's key
    title: str
    order: int  # position on the page, smallest first
    visible: Callable[[Actor], bool]
    build: Callable[[Context], dict[str, Any]]
    headline: tuple[str, ...] = ()  # figures also given at the top of the API's answer


REGISTRY: dict[str, Panel] = {}
_loaded = False


def panel(key: str, title: str, *, order: int, visible: Callable[[Actor], bool],
          headline: tuple[str, ...] = ()) -> Callable[[Callable[[Context], dict[str, Any]]], Panel]:
    """Register the decorated function as the builder of panel ``key``."""

    def register(build: Callable[[Context], dict[str, Any]]) -> Panel:
        if key in REGISTRY:
            raise ValueError(f"two overview panels are called {key!r}")
        REGISTRY[key] = made = Panel(key, title, order, visible, build, headline)
        return made

    return register


def load_panels() -> dict[str, Panel]:
    """Import every module of appliance/services/panels/ once (each registers its panel)."""
    global _loaded
    if not _loaded:
        from appliance.services import panels

        for module in sorted(pkgutil.iter_modules(panels.__path__), key=lambda m: m.name):
            importlib.import_module(f"{panels.__name__}.{module.name}")
        _loaded = True
    return REGISTRY


@dataclass(frozen=True)
class Built:
    panel: Panel
    data: dict[str, Any]


def collect(session: Session, actor: Actor, settings: Settings, *, now: dt.datetime | None = None) -> list[Built]:
    """The panels ``actor`` may see, in order, with their figures."""
    context = Context(session, actor, settings, now or utcnow())
    shown = sorted((p for p in load_panels().values() if p.visible(actor)), key=lambda p: (p.order, p.key))
    return [Built(p, p.build(context)) for p in shown]


def headline(built: list[Built]) -> dict[str, Any]:
    """The headline figures of the panels built (a figure the caller may not see is absent)."""
    return {name: b.data[name] for b in built for name in b.panel.headline}
