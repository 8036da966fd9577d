"""The runtime fixtures, for the integration tests (the brokers' are in ``tests/conftest.py``)."""

from tests.integration.processes import processes, topology  # noqa: F401
