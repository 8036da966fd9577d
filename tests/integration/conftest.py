"""The test broker and the runtime fixtures, for the integration tests."""

from tests.broker import broker_url  # noqa: F401
from tests.integration.processes import processes, topology  # noqa: F401
