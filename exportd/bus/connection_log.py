"""What the log says of the RabbitMQ connection once it is up: one WARNING line when the
broker drops it, one INFO line when aio-pika has it back (the client library's own lines
about it show at DEBUG only, see :class:`exportd.logs.handler.AmqpClientAtDebug`)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class ConnectionLog:
    """Logs the losses and the returns of one robust connection, a line each: aio-pika
    calls :meth:`lost` on every close (also of each failed reconnect, and of the bus's own
    close, which are not logged) and :meth:`back` on every reconnect."""

    def __init__(self, broker: str) -> None:
        self.broker = broker
        self.closing = False
        """Set by the bus before it closes the connection itself."""
        self._down = False

    def lost(self, _connection: Any, error: BaseException | None) -> None:
        """The connection closed (``error`` says why; None for a close asked for)."""
        if self.closing or self._down or error is None:
            return
        self._down = True
        log.warning(
            "lost the connection to RabbitMQ at %s (%s: %s); reconnecting",
            self.broker,
            type(error).__name__,
            error,
        )
        log.debug("how the connection to RabbitMQ was lost", exc_info=error)

    def back(self, _connection: Any) -> None:
        """aio-pika connected again and restored the channels and consumers."""
        if self._down:
            self._down = False
            log.info("reconnected to RabbitMQ at %s", self.broker)
