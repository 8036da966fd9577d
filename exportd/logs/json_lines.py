"""Log records as JSON lines: one object a line, for a log shipper to read."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import msgspec

_ENCODER = msgspec.json.Encoder(enc_hook=str)
"""Encodes what ``extra=`` brought of a type JSON lacks as its ``str``."""
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",  # Python 3.12's
    "color_message",  # uvicorn's message with terminal colours
}
"""The attributes every record has (and uvicorn's copy of the message): any other one came
from ``extra=`` or a filter."""


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``; ``job_id``, ``part`` and ``attempt`` where the record has them (see
    :mod:`exportd.logs.context`) and every other field a call gave in ``extra=`` (the
    access log's ``route``, ``status``...); and
    ``exception`` (the formatted traceback) and ``stack`` where it has those.  Newlines in
    them are escaped, so that a record stays one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line of ``record`` (without its newline)."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _ENCODER.encode(entry).decode()
