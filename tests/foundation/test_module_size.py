"""Modules that fit in one head: no module of the appliance over 600 lines (migrations, which are
generated history, and the venue simulators, which mirror whole venue APIs, aside)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "appliance"
LIMIT = 600
EXEMPT = (PACKAGE / "store" / "migrations" / "versions", PACKAGE / "sim")


def test_no_module_is_over_the_limit() -> None:
    sizes = {path.relative_to(PACKAGE.parent): len(path.read_text(encoding="utf-8").splitlines())
             for path in PACKAGE.rglob("*.py") if not any(path.is_relative_to(e) for e in EXEMPT)}
    assert sizes, "no modules found"
    assert {str(path): n for path, n in sizes.items() if n > LIMIT} == {}
