"""What the packaging tests share: where things are, and the system tools they drive.

The tools (systemd-analyze, shellcheck, nginx, caddy) are Debian packages that
packaging/dev/install-test-tools.sh installs for `make test`. A test never installs anything
itself: without the tool it is skipped on a developer's machine and fails in CI (CI=true), so a
missing install step cannot turn the packaging checks green by skipping them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "vigatra.service"
INSTALL_SH = REPO / "install.sh"
BUILD_BUNDLE_SH = REPO / "packaging" / "build-bundle.sh"
LOCK = REPO / "offline-wheels" / "requirements.lock"

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str, package: str) -> str:
    """The tool's path; skip (locally) or fail (CI) when it is not installed."""
    # /usr/sbin is not on a non-root PATH, and nginx lives there.
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)),
                                      None)
    if path:
        return path
    why = f"{name} is not installed (Debian package {package}; packaging/dev/install-test-tools.sh installs it)"
    if IN_CI:
        pytest.fail(why, pytrace=False)
    pytest.skip(why)
