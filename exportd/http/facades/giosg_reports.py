"""The giosg report exports API (seed ``000_b89c8121eab5eadc``): a room's chat logs
or stats as a file, made in the background.

Routes, under ``/api/v5/orgs/{organization_id}/users/{user_id}/reportexports``:

* ``POST`` starts an export (201 with the report export, still in progress); the
  payload's read-only attributes (``id``, ``created_at``, ``url``...: a report export
  read back) are ignored, an attribute the page does not document is a 400;
* ``GET .../{report_id}`` is one report export, with its ``url`` once it is done;
* ``GET`` lists the user's report exports, newest ``created_at`` first, as giosg's
  paginated collection ``{"next": url | null, "previous": url | null, "results":
  [...]}``; query parameters ``page`` (from 1) and ``page_size`` (1 to 1000,
  default 20).

A caller authenticates with ``Authorization: Token <token>`` (``Bearer`` works
too); the token needs the ``settings`` permission and an active subscription,
the URL's organisation must be the caller's (403) and the URL's user one of its
users (404 if there is no such user, 403 if they belong to another
organisation).  A report export is an exportd job made through this API (labelled
``api=giosg-reports``) that belongs to the URL's user (its ``created_by_user_id``):
the user's jobs made through the native API or another facade are neither listed
nor read.  A report export of another organisation or user is not found (404).

Error bodies are giosg's (see :mod:`exportd.http.facades.giosg_common`):
``{"<attribute>": ["<message>"]}`` for a 400, ``{"detail": "<message>"}`` else.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Router, get, post
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, JSONBody, QueryParameter

from exportd.engine.store import JobQuery
from exportd.errors import FieldError, Forbidden, InvalidRequest, NotFound
from exportd.http.context import (
    MAX_PAGE_NUMBER,
    AnyConnection,
    AnyRequest,
    HttpApi,
    api_of,
    caller_of,
    requires,
)
from exportd.http.facades.common import made_through
from exportd.http.facades.giosg_common import giosg_errors, same_org
from exportd.kernel.window import parse_window
from exportd.messages import API_LABEL, ExportRequest, Interval, JobSnapshot
from exportd.plugins.hookspecs import hookimpl

PERMISSION = "settings"
API = "giosg-reports"
"""This API's :data:`~exportd.http.facades.common.API_LABEL`."""
SOURCE = "rooms"
FORMATS = {"logs": ("csv", "xlsx", "txt"), "stats": ("csv", "xlsx")}
"""The formats each ``type`` of report may have."""
REQUIRED = ("starting_at", "ending_at", "room_id", "type", "format")
PARAMS = ("room_id", "type", "is_real_conversation", "min_message_count")
"""The attributes that are the ``rooms`` source's parameters, under the same names."""
EDITABLE = ("starting_at", "ending_at", "format", *PARAMS)
"""The attributes a client sets; the page's others are read-only."""
RENAMES = {"interval.start": "starting_at", "interval.end": "ending_at"}
"""exportd's names of the interval's ends, as giosg's attributes."""
PATH = "/api/v5/orgs/{organization_id:str}/users/{user_id:str}/reportexports"


class ReportExportPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The attributes of a report export, as a client sends them.

    Each editable one is optional here so that every missing required attribute is
    reported at once (:meth:`request`); a null optional one is as if left out.  The
    read-only ones are ignored, whatever their value, so that a client may post
    back a report export it read; an attribute the page does not document is a 400.
    """

    starting_at: str | msgspec.UnsetType = msgspec.UNSET
    ending_at: str | msgspec.UnsetType = msgspec.UNSET
    room_id: str | msgspec.UnsetType = msgspec.UNSET
    type: str | msgspec.UnsetType = msgspec.UNSET
    format: str | msgspec.UnsetType = msgspec.UNSET
    is_real_conversation: bool | msgspec.UnsetType | None = msgspec.UNSET
    min_message_count: int | msgspec.UnsetType | None = msgspec.UNSET
    id: Any = msgspec.UNSET
    created_at: Any = msgspec.UNSET
    created_by_user_id: Any = msgspec.UNSET
    updated_at: Any = msgspec.UNSET
    completed_at: Any = msgspec.UNSET
    expires_at: Any = msgspec.UNSET
    is_failed: Any = msgspec.UNSET
    url: Any = msgspec.UNSET

    def request(self, org_id: str, user_id: str) -> ExportRequest:
        """The export of ``user_id`` of ``org_id`` these attributes ask for; an
        :class:`InvalidRequest` naming every missing attribute, or a format that the
        type does not allow.  The ``rooms`` source checks the rest."""
        given: dict[str, Any] = {
            name: value
            for name in EDITABLE
            if (value := getattr(self, name)) is not msgspec.UNSET and value is not None
        }
        errors = [
            FieldError(name, "This field is required.") for name in REQUIRED if name not in given
        ]
        allowed = FORMATS.get(given.get("type", ""))
        if allowed and "format" in given and given["format"] not in allowed:
            errors.append(
                FieldError(
                    "format",
                    f"{given['format']!r} is not a format of {given['type']} reports: "
                    f"use {' or '.join(allowed)}",
                )
            )
        if errors:
            raise InvalidRequest(f"invalid {', '.join(e.name for e in errors)}", errors)
        return ExportRequest(
            source=SOURCE,
            format=given["format"],
            params={name: given[name] for name in PARAMS if name in given},
            interval=Interval(start=given["starting_at"], end=given["ending_at"]),
            org_id=org_id,
            user_id=user_id,
            labels={API_LABEL: API},
        )


class ReportExport(msgspec.Struct, kw_only=True):
    """A report export, with every attribute of giosg's page.

    ``is_real_conversation`` and ``min_message_count`` are null for stats.
    ``is_failed`` is null while the export runs; ``url`` is set only while the
    file of a successful export can be downloaded.
    """

    id: str
    starting_at: datetime
    ending_at: datetime
    room_id: str
    type: str
    format: str
    is_real_conversation: bool | None
    min_message_count: int | None
    created_at: datetime
    created_by_user_id: str | None
    updated_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None
    is_failed: bool | None
    url: str | None


class ReportExportList(msgspec.Struct, kw_only=True):
    """A page of report exports, newest first, with links to its neighbours."""

    next: str | None
    previous: str | None
    results: list[ReportExport]


def report_export(api: HttpApi, request: AnyRequest, job: JobSnapshot) -> ReportExport:
    """``job`` as a report export, its download URL signed for ``request``'s caller.  The
    URL works as long as the file (the page's ``url`` downloads the file "if the report
    is not yet expired")."""
    params = job.request.params
    logs = params.get("type") == "logs"
    window = parse_window(job.request.interval, job.request.timezone)
    links = api.file_links(request, job, until_expiry=True)
    return ReportExport(
        id=job.id,
        starting_at=window.start,
        ending_at=window.end,
        room_id=params.get("room_id", ""),
        type=params.get("type", ""),
        format=job.request.format,
        is_real_conversation=params.get("is_real_conversation") if logs else None,
        min_message_count=params.get("min_message_count", 0) if logs else None,
        created_at=job.created_at,
        created_by_user_id=job.request.user_id,
        updated_at=job.updated_at,
        completed_at=job.completed_at,
        expires_at=job.expires_at,
        is_failed=None
        if job.completed_at is None
        else any(part.status != "done" for part in job.parts),
        url=links[0].url if links else None,
    )


def org_user(connection: AnyConnection, _: BaseRouteHandler) -> None:
    """A route guard, after :func:`same_org`: the path's ``user_id`` is a user (404
    otherwise) of the caller's organisation (403 otherwise)."""
    user = api_of(connection).tenants.user(connection.path_params["user_id"])
    if user.org_id != caller_of(connection).org.id:
        raise Forbidden(f"you do not have access to the user {user.id}")


@post("/", status_code=201, summary="Start exporting a report")
async def create_report_export(
    request: AnyRequest, user_id: FromPath[str], data: JSONBody[ReportExportPayload]
) -> ReportExport:
    """Start exporting a room's logs or stats; the answer is the report export in
    progress.  A room that does not exist (or is another organisation's) is a 400
    naming ``room_id``."""
    api = api_of(request)
    export = data.request(caller_of(request).org.id, user_id)
    try:
        job = await api.engine.submit(export)
    except NotFound as exc:
        raise InvalidRequest(exc.message, exc.fields) from None
    return report_export(api, request, job)


@get("/{report_id:str}", summary="Retrieve a report export")
async def get_report_export(
    request: AnyRequest, user_id: FromPath[str], report_id: FromPath[str]
) -> ReportExport:
    """One report export of the user, with its download URL once it is done."""
    api = api_of(request)
    job = await api.engine.get(report_id, caller_of(request).org.id)
    if job.request.user_id != user_id or not made_through(job, API):
        raise NotFound(f"no report export {report_id!r} of user {user_id}")
    return report_export(api, request, job)


@get("/", summary="List report exports by a user")
async def list_report_exports(
    request: AnyRequest,
    user_id: FromPath[str],
    *,
    page: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_NUMBER)] = 1,
    page_size: Annotated[int, QueryParameter(ge=1, le=1000)] = 20,
) -> ReportExportList:
    """The user's report exports, newest first, a page at a time."""
    api = api_of(request)
    found = await api.engine.list_jobs(
        JobQuery(
            org_id=caller_of(request).org.id,
            user_id=user_id,
            labels={API_LABEL: API},
            limit=page_size,
            offset=(page - 1) * page_size,
        )
    )

    def link(number: int) -> str:
        query = urlencode({"page": number, "page_size": page_size})
        return f"{api.base_url(request)}{request.url.path}?{query}"

    return ReportExportList(
        next=link(page + 1) if page * page_size < found.total else None,
        previous=link(page - 1) if page > 1 else None,
        results=[report_export(api, request, job) for job in found.jobs],
    )


@hookimpl
def exportd_http_routes(api: HttpApi) -> Iterable[Router]:
    """The report exports routes."""
    return [
        Router(
            PATH,
            route_handlers=[create_report_export, get_report_export, list_report_exports],
            guards=[requires(PERMISSION), same_org, org_user],
            exception_handlers=giosg_errors(RENAMES),  # type: ignore[arg-type]
            tags=["giosg report exports"],
            security=[{"token": []}],
        )
    ]
