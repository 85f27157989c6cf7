"""Venue adapters: exchanges through ccxt, chains and prediction markets through our own clients.

No database access here (an import-linter contract checks it)."""
