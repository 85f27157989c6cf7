"""Vigatra: employee crypto-compliance appliance."""

__version__ = "0.1.0"
