"""A started bus per test, of each implementation, on a topology no other test shares."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from exportd.bus.amqp import AmqpBus
from exportd.bus.base import Bus
from exportd.bus.local import LocalBus
from exportd.bus.topology import Topology
from exportd.config.settings import BrokerSettings
from tests.broker import delete_topology


@dataclass(frozen=True)
class Implementation:
    """How to make a bus of one implementation, and clean up after it."""

    name: str
    broker_url: str | None = None
    """The RabbitMQ of an :class:`AmqpBus`; None for the :class:`LocalBus`."""

    def make(self, topology: Topology, *, confirm_timeout: float = 5.0) -> Bus:
        """A bus, not started, with its broker connection named after the topology."""
        if self.broker_url is None:
            return LocalBus(topology)
        settings = BrokerSettings(url=self.broker_url, confirm_timeout=confirm_timeout)
        return AmqpBus(settings, topology, name=connection_name(topology))

    async def clean(self, topology: Topology) -> None:
        """Delete the topology's queues and exchanges from the broker."""
        if self.broker_url is not None:
            await delete_topology(self.broker_url, topology)


def connection_name(topology: Topology) -> str:
    """The name a test's :class:`AmqpBus` gives its connection."""
    return f"exportd-{topology.prefix}"


@pytest.fixture(params=["local", "amqp"])
def implementation(request: pytest.FixtureRequest) -> Implementation:
    """Each bus implementation; the AMQP one needs the test broker."""
    if request.param == "amqp":
        return Implementation("amqp", request.getfixturevalue("broker_url"))
    return Implementation("local")


@pytest.fixture
def topology() -> Topology:
    """A topology no other test shares."""
    return Topology(prefix=f"test-{uuid.uuid4().hex}.")


@pytest.fixture
async def bus(implementation: Implementation, topology: Topology) -> AsyncIterator[Bus]:
    """A started bus; on RabbitMQ its queues and exchanges are deleted afterwards."""
    started = implementation.make(topology)
    try:
        async with started:
            yield started
    finally:
        await implementation.clean(topology)
