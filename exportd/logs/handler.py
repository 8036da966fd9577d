"""The stderr handler of the services (``exportd serve``, ``engine``, ``worker``), set up
from the ``[log]`` settings."""

from __future__ import annotations

import logging
import sys

from exportd.config.settings import LogSettings
from exportd.logs.context import JobFields
from exportd.logs.json_lines import JsonFormatter
from exportd.logs.text_lines import TextFormatter

OWN_LOGGER = "exportd"
LIBRARY_LEVEL = logging.WARNING
"""The least level of the libraries' lines, unless ``log.level`` is higher."""
AMQP_CLIENT = frozenset({"aiormq", "aio_pika"})
"""The top-level loggers whose lines are all shown at DEBUG only (see
:class:`AmqpClientAtDebug`)."""


class AmqpClientAtDebug(logging.Filter):
    """Turns every line of the AMQP client's loggers into a DEBUG line, shown only when
    ``log.level`` is ``DEBUG``.

    A broker that drops the connection made aio-pika and aiormq log a dozen lines at
    ERROR and WARNING, with tracebacks, and nothing when the connection came back; the
    bus logs one WARNING line for the loss and one INFO line for the reconnect itself
    (:mod:`exportd.bus.connection_log`), and whatever else goes wrong reaches exportd as an
    exception.
    """

    def __init__(self, shown: bool) -> None:
        super().__init__()
        self.shown = shown

    def filter(self, record: logging.LogRecord) -> bool:
        """Demote the AMQP client's records; keep them only if DEBUG lines are shown."""
        if record.name.partition(".")[0] not in AMQP_CLIENT:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return self.shown


class ServiceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`log_to_stderr` installs (one at a time)."""


def log_to_stderr(settings: LogSettings) -> None:
    """Log to stderr as ``settings`` say: exportd's loggers from ``settings.level``, the
    libraries' from ``WARNING`` (or that level, if higher), in text or JSON lines, each
    record with the fields of its job (:class:`~exportd.logs.context.JobFields`).

    A handler this installed before is replaced; other handlers (a test's) stay."""
    level = logging.getLevelNamesMapping()[settings.level]
    handler = ServiceHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    handler.addFilter(JobFields())
    handler.addFilter(AmqpClientAtDebug(shown=level <= logging.DEBUG))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, ServiceHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(level, LIBRARY_LEVEL))
    logging.getLogger(OWN_LOGGER).setLevel(level)
