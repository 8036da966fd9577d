"""The test broker, for the runtime tests here."""

from tests.broker import broker_url  # noqa: F401
