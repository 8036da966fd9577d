"""The HTTP access log: a line at INFO per request answered, on ``exportd.http.access``.

A line holds the method, the route's template (never the path as sent, nor its query
string: see :mod:`exportd.http.answers`), the status, the time to the end of the answer
in milliseconds and the caller's org (``-`` for requests without a token, such as
downloads); never a token or another header.  The same values are the record's
``method``, ``route``, ``status``, ``duration_ms`` and ``org`` fields, which
``log.format = "json"`` writes out as such.
"""

from __future__ import annotations

import logging

from exportd.http.answers import Answer

log = logging.getLogger("exportd.http.access")


def log_answer(answer: Answer) -> None:
    """Log the line of ``answer`` (a :data:`~exportd.http.answers.Watcher`)."""
    fields = {
        "method": answer.method,
        "route": answer.route,
        "status": answer.status,
        "duration_ms": round(answer.seconds * 1000, 1),
        "org": answer.org,
    }
    log.info(
        "%(method)s %(route)s %(status)d %(duration_ms).1f ms org=%(org)s", fields, extra=fields
    )
