"""Rocket.Chat's ``POST /api/v1/rooms.export`` (seed ``001``): a room's messages to a
file or to the caller's email, as html or json.

A Rocket.Chat client sends ``X-User-Id`` and ``X-Auth-Token``; exportd checks that
the token is the user's.  The export is the ``rooms`` source's ``logs`` for the
caller's organisation, from ``dateFrom`` (default the epoch) to ``dateTo``
(default now, exclusive; a bare date means its midnight, UTC, as in Rocket.Chat).
``type: email`` sends the files to the user's email address once the job is done
(see ``docs/delivery.md``); ``type: file`` leaves them for download through the
native API.  Errors have Rocket.Chat's body, ``{success: false, error, errorType}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Response, Router, post
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.params import JSONBody

from exportd.errors import ErrorBody, ExportError, Forbidden, InvalidRequest, NotFound, Unauthorized
from exportd.http.context import AnyConnection, AnyRequest, HttpApi, api_of, caller_of
from exportd.http.errors import on_export_error
from exportd.http.facades.common import API_LABEL
from exportd.kernel.window import parse_window
from exportd.messages import Delivery, ExportRequest, Interval
from exportd.plugins.hookspecs import hookimpl

PERMISSION = "mail-messages"
API = "rocketchat"
"""This API's :data:`~exportd.http.facades.common.API_LABEL`."""
EPOCH = "1970-01-01"
TYPES = ("file", "email")
FORMATS = ("html", "json")


class RoomsExport(msgspec.Struct, kw_only=True):
    """The body of ``rooms.export``; unknown fields are ignored, as Rocket.Chat does."""

    rid: str | None = None
    """The room id."""
    type: str | None = None
    """``file`` or ``email``."""
    dateFrom: str | None = None  # noqa: N815 - Rocket.Chat's name
    """The first day (or moment) to export, ISO 8601; default 1970-01-01."""
    dateTo: str | None = None  # noqa: N815 - Rocket.Chat's name
    """Where the export ends (exclusive), ISO 8601; default now."""
    format: str | None = None
    """``html`` or ``json``."""


class Success(msgspec.Struct, kw_only=True):
    """Rocket.Chat's answer to a request it took."""

    success: bool = True


class Failure(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Rocket.Chat's error body; ``errorType`` is absent for ``unauthorized``."""

    success: bool
    error: str
    errorType: str | None = None  # noqa: N815 - Rocket.Chat's name


class RocketChatError(Exception):
    """A refusal in Rocket.Chat's terms: a status and an error type."""

    def __init__(self, status: int, error_type: str) -> None:
        super().__init__(error_type)
        self.status = status
        self.error_type = error_type


def invalid(error_type: str) -> RocketChatError:
    """A 400 of ``error_type`` (``error-invalid-params``, ``-room``, ``-format``)."""
    return RocketChatError(400, error_type)


def failure(status: int, error_type: str) -> Response[Failure]:
    """The answer for a refusal."""
    body = Failure(success=False, error=f"[{error_type}]", errorType=error_type)
    return Response(body, status_code=status, media_type="application/json")


def on_rocketchat_error(request: AnyRequest, exc: RocketChatError) -> Response[Failure]:
    """A refusal of this facade."""
    return failure(exc.status, exc.error_type)


def on_bad_body(request: AnyRequest, exc: HTTPException) -> Response[Any]:
    """A body that is not JSON, or a field of the wrong type: invalid params."""
    return failure(400, "error-invalid-params")


def on_export_failure(request: AnyRequest, exc: ExportError) -> Response[Any]:
    """exportd's errors in Rocket.Chat's terms; any other keeps exportd's body."""
    if isinstance(exc, Unauthorized):
        body = Failure(success=False, error="unauthorized")
        return Response(body, status_code=401, media_type="application/json")
    if isinstance(exc, Forbidden):
        return failure(403, "error-not-allowed")
    names = {field.name for field in exc.fields}
    if isinstance(exc, NotFound) or "params.room_id" in names:
        return failure(400, "error-invalid-room")
    if "format" in names:
        return failure(400, "error-invalid-format")
    if isinstance(exc, InvalidRequest):
        return failure(400, "error-invalid-params")
    response: Response[ErrorBody] = on_export_error(request, exc)
    return response


def identified(connection: AnyConnection, _: BaseRouteHandler) -> None:
    """A route guard: the caller must be known (any permission); see :func:`caller_of`."""
    connection.state.caller = api_of(connection).identify(connection)


def interval(body: RoomsExport) -> Interval:
    """``dateFrom`` to ``dateTo``, checked; :class:`RocketChatError` if either is not
    a date or they are in the wrong order."""
    found = Interval(
        start=body.dateFrom or EPOCH,
        end=body.dateTo or datetime.now(UTC).isoformat(),
    )
    try:
        parse_window(found, "UTC")
    except InvalidRequest:
        raise invalid("error-invalid-params") from None
    return found


@post("/rooms.export", status_code=200, summary="Rocket.Chat: export a room to a file or email")
async def rooms_export(request: AnyRequest, data: JSONBody[RoomsExport]) -> Success:
    """Export room ``rid``'s messages between ``dateFrom`` and ``dateTo`` as ``format``,
    to a file or to the caller's email.  Needs the ``mail-messages`` permission."""
    api = api_of(request)
    caller = caller_of(request)
    if not data.rid or data.type not in TYPES:
        raise invalid("error-invalid-params")
    window = interval(data)
    caller.require(PERMISSION)
    if data.format not in FORMATS:
        raise invalid("error-invalid-format")
    delivery = Delivery(type="file")
    if data.type == "email":
        if not caller.user.email:
            raise invalid("error-invalid-params")
        delivery = Delivery(type="email", to=[caller.user.email])
        api.plugins.check_delivery(delivery)
    await api.engine.submit(
        ExportRequest(
            source="rooms",
            format=data.format,
            params={"room_id": data.rid, "type": "logs"},
            interval=window,
            delivery=delivery,
            org_id=caller.org.id,
            user_id=caller.user.id,
            name=f"room {data.rid}",
            labels={API_LABEL: API},
        )
    )
    return Success()


@hookimpl
def exportd_http_routes(api: HttpApi) -> Iterable[Router]:
    """The ``rooms.export`` route."""
    return [
        Router(
            "/api/v1",
            route_handlers=[rooms_export],
            guards=[identified],
            exception_handlers={
                RocketChatError: on_rocketchat_error,
                ExportError: on_export_failure,
                # The app's handlers of both are exportd's: each needs replacing here.
                ValidationException: on_bad_body,
                HTTPException: on_bad_body,
            },
            tags=["rocketchat"],
            security=[{"token": []}],
        )
    ]
