"""Documentation: config/vigatra.example.yaml is generated from the schema and checked by a test."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml

from appliance.settings.loader import (
    Settings,
    _fields,
)
from appliance.settings.sections import (
    MAP_KEYS,
    VENUE_IDS,
)


def describe(cls: type = Settings, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, str]]:
    """Every configuration key as (path, default, doc), in schema order.

    Free-form maps (chains.evm) are described with the placeholder key ``<name>``.
    """
    rows: list[tuple[tuple[str, ...], Any, str]] = []
    hints = typing.get_type_hints(cls)
    for f in _fields(cls):
        path = (*prefix, f.name)
        tp: Any = hints[f.name]
        factory: Any = f.default_factory
        default = f.default if f.default is not dataclasses.MISSING else factory()
        if dataclasses.is_dataclass(tp):
            sub: Any = tp
            rows.append((path, None, f.metadata.get("doc", "")))
            rows.extend(describe(sub, path))
        elif get_origin(tp) is dict:
            rows.append((path, None, f.metadata.get("doc", "")))
            item_type = get_args(tp)[1]
            if not dataclasses.is_dataclass(item_type):  # a map of lists: one example entry
                rows.append(((*path, "<name>"), (), ""))
                continue
            section: Any = item_type
            for key in (VENUE_IDS if path == ("venues",) else ("<name>",)):
                rows.append(((*path, key), None, ""))
                rows.extend(describe(section, (*path, key)))
        else:
            rows.append((path, default, f.metadata.get("doc", "")))
    return rows


def example_yaml() -> str:
    lines = [
        "# Vigatra configuration. Every key is optional; the value shown is the default.",
        "# Each key can be overridden by an environment variable named after its path,",
        "# e.g. database.url -> VIGATRA_DATABASE_URL, server.port -> VIGATRA_SERVER_PORT.",
        "# Secrets never go in this file: only references to where the key provider finds them.",
        "",
    ]
    for path, default, doc in describe():
        indent = "  " * (len(path) - 1)
        # A free-form map's entries are an example to copy (e.g. `ethereum:` for <name>), so commented out.
        example = "<name>" in path
        key = MAP_KEYS[path[:-1]][2] if path[-1] == "<name>" else path[-1]
        mark = "# " if example else ""
        if doc:
            lines.append(f"{indent}# {doc}")
        if path[-1] == "<name>" and default == ():
            lines.append(f"{indent}# {_yaml_scalar(key)}: [Admin]")
        elif default is None:
            lines.append(f"{indent}{mark}{key}:")
        else:
            lines.append(f"{indent}{mark}{key}: {_yaml_scalar(default)}")
    return "\n".join(lines) + "\n"


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, tuple):
        value = list(value)
    dumped = yaml.safe_dump(value, default_flow_style=True).strip()
    return dumped.removesuffix("\n...").removesuffix("...").strip()
