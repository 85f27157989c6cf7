"""A ready appliance on a test database, with one persona per default role.

Personas (healthchecks style): alice (Admin), carol (Compliance), victor (Viewer), nora (no role).
Passwords are long random phrases; argon2 runs at its minimum cost so the suite stays fast.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.settings import Settings, settings_from_mapping

PERSONAS: dict[str, tuple[str, ...]] = {
    "alice": ("Admin",),
    "carol": ("Compliance",),
    "victor": ("Viewer",),
    "nora": (),
}
FAST_ARGON2 = {"argon2_memory_kib": 19456, "argon2_time_cost": 2, "argon2_parallelism": 1}


def test_settings(db_url: str, data_dir: Path, kek_var: str, **overrides: Any) -> Settings:
    raw: dict[str, Any] = {
        "data_dir": str(data_dir),
        "appliance_id": "test-appliance",
        "database": {"url": db_url},
        "keys": {"provider": "env", "env_var": kek_var},
        "auth": dict(FAST_ARGON2),
        "poller": {"enabled": False},
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return settings_from_mapping(raw, env={})


def new_kek_env() -> str:
    """A fresh KEK in a fresh environment variable; returns the variable's name."""
    name = f"VIGATRA_TEST_KEK_{secrets.token_hex(4).upper()}"
    os.environ[name] = base64.b64encode(secrets.token_bytes(32)).decode()
    return name


@dataclass
class Persona:
    username: str
    password: str
    user_id: int
    roles: tuple[str, ...]


@dataclass
class TestAppliance:
    appliance: Any
    settings: Settings
    personas: dict[str, Persona] = field(default_factory=dict)

    @property
    def store(self) -> Any:
        return self.appliance.store


def build(db_url: str, data_dir: Path, **overrides: Any) -> TestAppliance:
    from appliance.rbac.actors import system_actor
    from appliance.services import identity
    from appliance.services.context import Appliance

    data_dir.mkdir(parents=True, exist_ok=True)
    settings = test_settings(db_url, data_dir, new_kek_env(), **overrides)
    app = Appliance(settings)
    personas: dict[str, Persona] = {}
    with app.store.unit_of_work() as session:
        app.keys.create_first(session)
        identity.ensure_builtin_roles(session)
        for name, roles in PERSONAS.items():
            password = f"pass-{secrets.token_urlsafe(16)}"
            while name in password.lower() or "vigatra" in password.lower():  # the policy refuses those (rarely drawn)
                password = f"pass-{secrets.token_urlsafe(16)}"
            user = identity.create_user(session, system_actor("test"), settings.auth, username=name,
                                        password=password, roles=roles)
            personas[name] = Persona(name, password, user.id, roles)
    app.open()
    return TestAppliance(app, settings, personas)
