"""One version: pyproject.toml's, read from the installed package's metadata by `vigatra --version` and
the UI footer (the wheel's own name is checked by tests/packaging/test_bundle.py)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import appliance

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_metadata_is_pyproject_s_version() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert appliance.__version__ == importlib.metadata.version("vigatra") == declared


def test_vigatra_version_prints_it() -> None:
    vigatra = Path(sys.executable).parent / "vigatra"  # the installed entry point
    result = subprocess.run([str(vigatra), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"vigatra, version {importlib.metadata.version('vigatra')}"


def test_the_ui_footer_shows_it(client: Any) -> None:
    page = client.get("/login", base_url="https://localhost").get_data(as_text=True)
    assert f"Vigatra appliance {importlib.metadata.version('vigatra')} ·" in page
