"""``data.url`` in messages, without its passwords however malformed it is, and checked
when the settings load.

This module imports nothing heavy (psycopg only when it checks a URL): the settings
use it, and every command loads them.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")
"""How a PostgreSQL ``data.url`` starts."""

SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
"""The URL's query parameters that hold secrets: messages never show them."""

USER_PASSWORD = re.compile(r"^[^:/?#]+://[^:@/?#]*:(?P<password>[^@/?#]*)@")
"""The password of a URL's user part (``scheme://user:PASSWORD@``)."""

REDACTED = "postgresql://***"
"""What a message shows of a URL too malformed to take apart."""


def redact(url: str) -> str:
    """``url`` without its password (in the user part or as a ``password`` or
    ``sslpassword`` parameter), to show in messages; never raises: a URL too malformed
    to take apart is :data:`REDACTED`."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a bad bracketed host, say
        return REDACTED
    netloc = parts.netloc
    if password is not None:
        netloc = netloc.replace(f":{password}@", ":***@", 1)
    query = "&".join(
        item for item in parts.query.split("&") if _parameter(item) not in SECRET_PARAMETERS
    )
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # as it is written: urlunsplit would rewrite sqlite:///PATH
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _parameter(item: str) -> str:
    """The name of one ``name=value`` item of a URL's query."""
    return unquote_plus(item.partition("=")[0])


def _secrets(url: str) -> list[str]:
    """The passwords in ``url``, as written and percent-decoded, longest first; found in
    its text, so that a URL too malformed to take apart gives them too."""
    user = USER_PASSWORD.match(url)
    query = url.partition("?")[2].partition("#")[0]
    found = [user["password"]] if user else []
    found += [
        item.partition("=")[2] for item in query.split("&") if _parameter(item) in SECRET_PARAMETERS
    ]
    variants = {text for raw in found for text in (raw, unquote(raw), unquote_plus(raw)) if text}
    return sorted(variants, key=len, reverse=True)


def reason(error: Exception, url: str) -> str:
    """What a psycopg error about ``url`` says, on one line (its messages span several),
    with the URL libpq may quote redacted and no password of it left."""
    text = " ".join(str(error).split()).replace(url, redact(url))
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def url_problem(url: str) -> str | None:
    """What is wrong with the PostgreSQL URL ``url``, or ``None`` if nothing is: libpq's
    own parsing (psycopg's) when psycopg is there, else a check of the URL's parts."""
    try:
        from psycopg import Error
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        try:
            urlsplit(url).port  # noqa: B018 (parsing it is the check)
        except ValueError as exc:
            return f"{redact(url)} is not a valid URL: {exc}"
        return None
    try:
        conninfo_to_dict(url)
    except Error as exc:
        return f"{redact(url)} is not a valid PostgreSQL URL: {reason(exc, url)}"
    return None


def is_postgresql(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL store."""
    return url.startswith(POSTGRESQL_SCHEMES)


def with_session(url: str, options: str, defaults: dict[str, str]) -> str:
    """The conninfo of the PostgreSQL ``url`` with ``options`` (``-c NAME=VALUE ...``)
    after the URL's own ``options``, which stay, and ``defaults`` for the parameters
    the URL does not set.  Needs psycopg."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = {**defaults, **conninfo_to_dict(url)}
    params["options"] = f"{params.get('options') or ''} {options}".strip()
    return make_conninfo("", **params)
