"""Rocket.Chat's ``POST /api/v1/rooms.export`` (seed ``001``): a room's messages to a
file or to the caller's email, as html or json.

A Rocket.Chat client sends ``X-User-Id`` and ``X-Auth-Token``, both required (an
``Authorization`` header is not read), and exportd checks that the token is the
user's.  The export is the ``rooms`` source's ``logs`` for the caller's
organisation, from ``dateFrom`` (default the epoch) to ``dateTo`` and its
whole day, as the Rocket.Chat server adds a day to ``dateTo`` (default now; a bare
date means its midnight, UTC, as in Rocket.Chat); ``dateFrom`` after ``dateTo`` is
``error-invalid-dates``.  ``type: file`` leaves the files for download through the
native API.  ``type: email`` sends them by email once the job is done (see
``docs/delivery.md``), in either of two forms:

* the seed page's, with ``format``: to the caller's own address;
* the form Rocket.Chat's own clients send, with ``toUsers`` (usernames: the names of
  users of the caller's organisation), ``toEmails``, ``subject`` and ``messages`` and
  no ``format`` (html then): to those users' addresses and to ``toEmails``, each of
  which must be the address of a user of the organisation, as through the native
  API.  ``subject`` names the job (and so the email's subject).  The file holds the
  room's messages from ``dateFrom`` to ``dateTo``, not just those in ``messages``.

Errors have Rocket.Chat's body, ``{success: false, error, errorType}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from litestar import Response, Router, post
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.params import JSONBody

from exportd.errors import ErrorBody, ExportError, Forbidden, InvalidRequest, NotFound, Unauthorized
from exportd.http.context import AnyConnection, AnyRequest, HttpApi, api_of, caller_of
from exportd.http.errors import on_export_error
from exportd.http.tenants import Caller
from exportd.kernel.window import parse_time, parse_window
from exportd.messages import API_LABEL, Delivery, ExportRequest, Interval
from exportd.plugins.hookspecs import hookimpl

PERMISSION = "mail-messages"
API = "rocketchat"
"""This API's :data:`~exportd.http.facades.common.API_LABEL`."""
EPOCH = "1970-01-01"
UTC_ZONE = ZoneInfo("UTC")
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
    """The last day to export (a day after it, if a date-time), ISO 8601; default now."""
    format: str | None = None
    """``html`` or ``json``; for ``type: email`` with recipients, default ``html``."""
    toUsers: list[str] | None = None  # noqa: N815 - Rocket.Chat's name
    """``type: email``: usernames of the caller's organisation to send the file to."""
    toEmails: list[str] | None = None  # noqa: N815 - Rocket.Chat's name
    """``type: email``: addresses (of users of the organisation) to send the file to."""
    subject: str | None = None
    """``type: email``: the export's name, and so the email's subject."""
    messages: list[str] | None = None
    """``type: email``: the messages a Rocket.Chat client selected; not empty."""

    @property
    def addressed(self) -> bool:
        """Whether this is an email export in the form of Rocket.Chat's own clients,
        with ``toUsers`` or ``toEmails``, rather than to the caller (the seed page's)."""
        return self.type == "email" and (self.toUsers is not None or self.toEmails is not None)


class Success(msgspec.Struct, kw_only=True):
    """Rocket.Chat's answer to a request it took."""

    success: bool = True


class Failure(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Rocket.Chat's error body; ``errorType`` is absent for ``unauthorized``."""

    success: bool
    error: str
    errorType: str | None = None  # noqa: N815 - Rocket.Chat's name


class RocketChatError(Exception):
    """A refusal in Rocket.Chat's terms: a status, an error type and maybe a reason."""

    def __init__(self, status: int, error_type: str, reason: str = "") -> None:
        super().__init__(error_type)
        self.status = status
        self.error_type = error_type
        self.reason = reason


def invalid(error_type: str, reason: str = "") -> RocketChatError:
    """A 400 of ``error_type`` (``error-invalid-params``, ``-room``, ``-format``...)."""
    return RocketChatError(400, error_type, reason)


def failure(status: int, error_type: str, reason: str = "") -> Response[Failure]:
    """The answer for a refusal: ``error`` is ``"<reason> [<error type>]"``, as the
    message of the server's ``Meteor.Error``."""
    error = f"{reason} [{error_type}]" if reason else f"[{error_type}]"
    body = Failure(success=False, error=error, errorType=error_type)
    return Response(body, status_code=status, media_type="application/json")


def on_rocketchat_error(request: AnyRequest, exc: RocketChatError) -> Response[Failure]:
    """A refusal of this facade."""
    return failure(exc.status, exc.error_type, exc.reason)


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
    """A route guard: the caller must be known (any permission), by Rocket.Chat's two
    headers: ``X-Auth-Token``, a token of the user that ``X-User-Id`` names.  See
    :func:`caller_of`."""
    token = connection.headers.get("x-auth-token", "").strip()
    user_id = connection.headers.get("x-user-id", "").strip()
    if not token or not user_id:
        raise Unauthorized("send both X-User-Id and X-Auth-Token")
    caller = api_of(connection).tenants.authenticate(token)
    if caller.user.id != user_id:
        raise Unauthorized("X-User-Id does not match the token's user")
    connection.state.caller = caller


def interval(body: RoomsExport) -> Interval:
    """``dateFrom`` to the end of ``dateTo``'s day (a day after ``dateTo``), checked;
    :class:`RocketChatError` if either is not a date, or ``dateFrom`` is after ``dateTo``."""
    start = body.dateFrom or EPOCH
    end = datetime.now(UTC)
    try:
        if body.dateTo:
            last = parse_time(body.dateTo, UTC_ZONE, "dateTo")
            if parse_time(start, UTC_ZONE, "dateFrom") > last:
                raise invalid("error-invalid-dates", "From date cannot be after To date")
            end = last + timedelta(days=1)
        found = Interval(start=start, end=end.isoformat())
        parse_window(found, "UTC")
    except (InvalidRequest, OverflowError):
        raise invalid("error-invalid-params") from None
    return found


def recipients(api: HttpApi, caller: Caller, body: RoomsExport) -> list[str]:
    """The addresses a ``type: email`` export goes to: the caller's own (the seed
    page's form) or, when ``toUsers`` or ``toEmails`` is given (the form of
    Rocket.Chat's clients), theirs; :class:`RocketChatError` for a recipient exportd
    does not mail (an unknown user, a stranger's address) or no recipient at all."""
    if not body.addressed:
        if not caller.user.email:
            raise invalid("error-invalid-params")
        return [caller.user.email]
    emails = [email.strip() for email in body.toEmails or [] if email.strip()]
    names = [name for name in body.toUsers or [] if name]
    if not names and not emails:
        raise invalid("error-invalid-recipient")
    if body.messages is not None and not body.messages:
        raise invalid("error-invalid-messages")
    strangers = api.tenants.strangers(caller.org.id, emails)
    if strangers:
        raise invalid(
            "error-invalid-recipient",
            f"toEmails: {', '.join(strangers)}: not the address of a user of your organisation",
        )
    users = api.tenants.users(caller.org.id)
    for name in names:
        found = unique(user.email for user in users if user.name == name and user.email)
        if len(found) != 1:
            problem = "several users" if found else "no user with an email address"
            raise invalid(
                "error-invalid-recipient", f"toUsers: {name!r} names {problem} of your organisation"
            )
        emails += found
    return unique(emails)


def unique(addresses: Iterable[str]) -> list[str]:
    """``addresses`` in their order, each as it first comes, without repeats (case aside)."""
    found: dict[str, str] = {}
    for address in addresses:
        found.setdefault(address.lower(), address)
    return list(found.values())


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
    export_format = data.format or ("html" if data.addressed else None)
    if export_format not in FORMATS:
        raise invalid("error-invalid-format")
    delivery = Delivery(type="file")
    if data.type == "email":
        delivery = Delivery(type="email", to=recipients(api, caller, data))
        api.plugins.check_delivery(delivery)
    await api.engine.submit(
        ExportRequest(
            source="rooms",
            format=export_format,
            params={"room_id": data.rid, "type": "logs"},
            interval=window,
            delivery=delivery,
            org_id=caller.org.id,
            user_id=caller.user.id,
            name=(data.subject if data.addressed else None) or f"room {data.rid}",
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
