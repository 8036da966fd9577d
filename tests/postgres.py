"""The PostgreSQL the tests talk to, and the databases they make there.

The server is ``postgresql://postgres@127.0.0.1:5432/`` unless
``EXPORTD_TEST_POSTGRES_URL`` says otherwise (its database is where the session's own
is created from).  Other people may use the same server: the session makes one
database of its own, ``exportd_test_<pid>_<hex>``, and drops it at the end; it never
touches another.  ``./scripts/services`` starts the server.  A server that cannot be
reached, or that refuses the login, skips the PostgreSQL tests (saying which, and
never the password), except under ``CI=true``, where it fails them: CI must not pass
by skipping.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from exportd.config.data_url import reason, redact
from tests.needs import missing

DIALECTS = ["sqlite", "postgresql"]
"""The data stores a fixture over both gives, in order."""

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """The URL of the server's maintenance database, where databases are made."""
    return os.environ.get("EXPORTD_TEST_POSTGRES_URL", DEFAULT_SERVER_URL)


def database_url(name: str) -> str:
    """The URL of the database ``name`` on the test server."""
    return urlunsplit(urlsplit(server_url())._replace(path=f"/{name}"))


def why_not(url: str, error: psycopg.OperationalError) -> str:
    """Why the tests cannot use the server at ``url``, without its password: it refused
    the login (it answered: a wrong role, password or database), or it is not there."""
    said = reason(error, url)
    if "FATAL:" in said:  # the server's own word
        return f"PostgreSQL at {redact(url)} refused the login ({said})"
    return f"no PostgreSQL at {redact(url)} ({said})"


@contextmanager
def scratch_database(purpose: str = "test") -> Iterator[str]:
    """A new, empty database of this process's own (its URL), dropped on exit."""
    name = f"exportd_{purpose}_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(server_url(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        missing(why_not(server_url(), exc))
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield database_url(name)
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
