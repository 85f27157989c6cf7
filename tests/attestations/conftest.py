"""The sync tests' appliance pointed at the simulators, for the later-sync test."""

from tests.sync.conftest import sta, sta_factory  # noqa: F401  (fixtures)
