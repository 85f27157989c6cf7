"""The `vigatra` admin CLI: a thin, lazy shell over the services."""
