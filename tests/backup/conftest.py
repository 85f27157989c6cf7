"""The key tests' fixtures (a configuration on each database, seeded secrets, the CLI) serve here too."""

from tests.keys.conftest import box, keys  # noqa: F401  (pytest fixtures, re-exported)
