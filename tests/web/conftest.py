"""The console tests' shared fixtures: accounts with cheap password hashes over seeded rows."""

from tests.web.test_console import cheap_hashes, seeded

__all__ = ["cheap_hashes", "seeded"]
