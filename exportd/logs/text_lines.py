"""Log records as text lines, for a terminal and for shippers that read plain lines."""

from __future__ import annotations

import logging

from exportd.logs.context import FIELDS

TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class TextFormatter(logging.Formatter):
    """A record as ``2026-12-04 18:33:18,675 INFO message``: local time, level, message,
    then ``job_id=... part=... attempt=...`` for those of the fields of its job (see
    :mod:`exportd.logs.context`) that the record has, so that ``grep job_id=ID`` finds
    every line of a job in text logs as it does in JSON ones.  A traceback follows its
    line."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        """The line of ``record``, without its traceback."""
        fields = [f"{name}={getattr(record, name)}" for name in FIELDS if hasattr(record, name)]
        return " ".join([super().formatMessage(record), *fields])
