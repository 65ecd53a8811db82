"""Fixtures of the documentation and secrets tests: real `docpilotd run` processes where a test
needs one (see tests/daemon_harness.py)."""

from tests.daemon_harness import daemon, daemons  # noqa: F401  (fixtures)
