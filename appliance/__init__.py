"""Vigatra: employee crypto-compliance appliance."""

from importlib.metadata import PackageNotFoundError, version

# One version: pyproject.toml's, as the installed package's metadata states it (the wheel, `vigatra
# --version` and the UI footer all read this).
try:
    __version__ = version("vigatra")
except PackageNotFoundError:  # a source tree that was never installed (pip install -e . fixes it)
    __version__ = "0+unknown"
