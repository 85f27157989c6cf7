"""Wire-faithful venue simulators, for tests, benchmarks and `vigatra demo`.

Imports nothing from the rest of the appliance (an import-linter contract checks it): the
simulators stand in for the outside world, so they must not share code with the clients they test.
"""
