"""What the commands' arguments share: argument types, the options several commands
take, and the settings those options override."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec

from exportd.config import Settings
from exportd.config.settings import WorkerSettings
from exportd.errors import InvalidRequest
from exportd.kernel.validation import convert


def at_least(minimum: int) -> Callable[[str], int]:
    """An argument type: a whole number of ``minimum`` or more."""

    def number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    return number


def add_broker_option(parser: argparse.ArgumentParser, *, help: str | None = None) -> None:
    """Add ``--broker URL``, which overrides the ``broker.url`` setting."""
    parser.add_argument(
        "--broker",
        metavar="URL",
        help=help
        or "the RabbitMQ to use, amqp://user:password@host:port/vhost "
        "(default: the broker.url setting)",
    )


def with_broker(settings: Settings, url: str | None) -> Settings:
    """``settings`` with the broker URL of ``--broker``, if given; the URL is checked."""
    if url is not None:
        settings = msgspec.structs.replace(
            settings, broker=msgspec.structs.replace(settings.broker, url=url)
        )
    if urlsplit(settings.broker.url).scheme not in ("amqp", "amqps"):
        name = "--broker" if url is not None else "broker.url"
        raise InvalidRequest.field(
            name, f"expected amqp://host/ or amqps://host/, got {settings.broker.url!r}"
        )
    return settings


def add_http_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--http HOST:PORT``, which overrides the ``http.listen`` setting."""
    parser.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve the HTTP API there, or not at all with 'off' (default: the http.listen "
        "setting, 127.0.0.1:8080; port 0 takes a free one, which the log names)",
    )


def with_http(settings: Settings, listen: str | None) -> Settings:
    """``settings`` with the ``http.listen`` of ``--http``, if given."""
    if listen is None:
        return settings
    return msgspec.structs.replace(
        settings, http=msgspec.structs.replace(settings.http, listen=listen)
    )


def with_concurrency(settings: Settings, concurrency: int | None, option: str) -> Settings:
    """``settings`` with ``worker.concurrency`` set from ``option``, if given, and checked."""
    if concurrency is None:
        return settings
    try:
        worker = convert(
            {**msgspec.to_builtins(settings.worker), "concurrency": concurrency}, WorkerSettings
        )
    except InvalidRequest as exc:
        raise InvalidRequest.field(option, exc.fields[0].message) from None
    return msgspec.structs.replace(settings, worker=worker)
