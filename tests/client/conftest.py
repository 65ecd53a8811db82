"""Fixtures of the integration tests: real `docpilotd run` processes (see tests/daemon_harness.py)."""

from tests.daemon_harness import daemon, daemons  # noqa: F401  (fixtures)
