"""Talkdesk-compatible report jobs (seed ``003``): ``/data/reports/{type}/jobs``.

A report ``type`` names an exportd source and the parameter that picks what to
export; the body carries it next to Talkdesk's ``name``, ``timezone``,
``format`` and ``timespan``:

==============  ==========================================  ==============
type            exportd source                              body field
==============  ==========================================  ==============
``chat_logs``   ``rooms`` with ``type: logs``               ``room_id``
``chat_stats``  ``rooms`` with ``type: stats``              ``room_id``
``qna``         ``qna`` (one file for up to 1000 rooms)     ``channel_id``
==============  ==========================================  ==============

``timespan.from`` is inclusive and ``timespan.to`` exclusive; a time without an
offset is read in ``timezone``.  Statuses are exportd's, but ``expired`` (the
file's lifetime is over) shows as ``deleted``: its file cannot be accessed.

* ``POST /data/reports/{type}/jobs``: 201 with ``{job, _links}``.
* ``GET /data/reports/{type}/jobs/{id}``: 200 with ``{job, _links}`` while the job
  is not done; once it is, 300 with the same body and ``Location`` naming its file.
* ``GET /data/reports/{type}/files/{id}``: the file (``?part=N`` picks a part of a
  ``qna`` report of more than 1000 rooms, from 0).
* ``DELETE /data/reports/{type}/jobs/{id}``: 204; the job shows as ``deleted``.

Every route needs a token with the ``data-reports:read`` permission.  Errors have
Talkdesk's body ``{code, message, description, fields: [{name, description}]}``:
``code`` is exportd's error code (``invalid_request``, ``unauthorized``,
``forbidden``, ``not_found``), ``description`` says what exactly is wrong.  An
unknown type is 400 ``report type is invalid``; a job of another type, of another
organisation or not made through this API is 404 ``report job not found``.  A job
keeps its report type in its ``report_type`` label, next to ``api=talkdesk``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from litestar import Response, Router, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from exportd.errors import ErrorBody, FieldError, InvalidRequest, NotFound
from exportd.http.context import (
    FILE_ANSWER,
    AnyRequest,
    HttpApi,
    api_of,
    caller_of,
    requires,
)
from exportd.http.errors import HANDLERS, native_error
from exportd.http.facades.common import made_through, renamed
from exportd.messages import API_LABEL, ExportRequest, Interval, JobSnapshot
from exportd.plugins.hookspecs import hookimpl

PERMISSION = "data-reports:read"
API = "talkdesk"
"""This API's :data:`~exportd.http.facades.common.API_LABEL`."""
TYPE_LABEL = "report_type"
"""The label that keeps a job's report type."""
QNA_ROOMS_PER_FILE = 1000
"""The most rooms a ``qna`` source part may have: one file for all but huge channels."""


@dataclass(frozen=True)
class ReportType:
    """What a report type exports: a source, the body field naming the thing to
    export (passed to the source under the same name), and fixed parameters."""

    source: str
    target: Literal["room_id", "channel_id"]
    params: dict[str, Any]


REPORT_TYPES = {
    "chat_logs": ReportType("rooms", "room_id", {"type": "logs"}),
    "chat_stats": ReportType("rooms", "room_id", {"type": "stats"}),
    "qna": ReportType("qna", "channel_id", {"rooms_per_part": QNA_ROOMS_PER_FILE}),
}
FIELD_NAMES = {
    "interval.start": "timespan.from",
    "interval.end": "timespan.to",
    "params.room_id": "room_id",
    "params.channel_id": "channel_id",
}
"""exportd's names of request fields, as a Talkdesk body names them."""
STATUS_MESSAGES = {401: "unauthorized access", 403: "forbidden access"}


class Timespan(msgspec.Struct, forbid_unknown_fields=True):
    """The time range of the report's records."""

    from_: str = msgspec.field(name="from")
    to: str


class NewReportJob(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The body that creates a report job."""

    name: str
    timezone: str = "UTC"
    format: Literal["csv", "json", "json_bulk"] = "csv"
    timespan: Timespan
    room_id: str | None = None
    """``chat_logs`` and ``chat_stats``: the room."""
    channel_id: str | None = None
    """``qna``: the Q&A channel."""


class ReportJob(msgspec.Struct, kw_only=True):
    """A report job as Talkdesk shows it."""

    id: str
    name: str
    timezone: str
    status: str
    format: str
    timespan: Timespan


class Href(msgspec.Struct):
    """A link."""

    href: str


class JobLinks(msgspec.Struct):
    """Where the job and its file are."""

    self_: Href = msgspec.field(name="self")
    files: Href


class ReportJobBody(msgspec.Struct):
    """The body of every answer about a job."""

    job: ReportJob
    links: JobLinks = msgspec.field(name="_links")


class ProblemField(msgspec.Struct):
    """A field at fault in a request."""

    name: str
    description: str


class TalkdeskError(msgspec.Struct):
    """Talkdesk's error body."""

    code: str
    message: str
    description: str
    fields: list[ProblemField]


def report_type(name: str) -> ReportType:
    """The report type ``name``; the documented 400 if there is none."""
    found = REPORT_TYPES.get(name)
    if found is None:
        known = ", ".join(REPORT_TYPES)
        raise InvalidRequest(
            "report type is invalid", [FieldError("type", f"unknown {name!r}; one of {known}")]
        )
    return found


def export_request(type_: str, body: NewReportJob) -> ExportRequest:
    """The exportd request for a report of type ``type_``, with the fields ``body`` gives,
    labelled with this API and the report type."""
    kind = report_type(type_)
    given = {"room_id": body.room_id, "channel_id": body.channel_id}
    target = given.pop(kind.target)
    if target is None:
        raise InvalidRequest.field(kind.target, "required field is missing")
    for name, value in given.items():
        if value is not None:
            raise InvalidRequest.field(name, f"not a field of this report type; use {kind.target}")
    return ExportRequest(
        source=kind.source,
        params={**kind.params, kind.target: target},
        format=body.format,
        interval=Interval(start=body.timespan.from_, end=body.timespan.to),
        timezone=body.timezone,
        name=body.name,
        labels={API_LABEL: API, TYPE_LABEL: type_},
    )


def job_body(api: HttpApi, request: AnyRequest, type_: str, job: JobSnapshot) -> ReportJobBody:
    """``job`` as Talkdesk shows it, with its links."""
    base = f"{api.base_url(request)}/data/reports/{type_}"
    return ReportJobBody(
        job=ReportJob(
            id=job.id,
            name=job.request.name or "",
            timezone=job.request.timezone,
            status="deleted" if job.status == "expired" else job.status,
            format=job.request.format,
            timespan=Timespan(from_=job.request.interval.start, to=job.request.interval.end),
        ),
        links=JobLinks(self_=Href(f"{base}/jobs/{job.id}"), files=Href(f"{base}/files/{job.id}")),
    )


async def report_job(request: AnyRequest, type_: str, job_id: str) -> JobSnapshot:
    """The caller's organisation's job ``job_id`` of report type ``type_``."""
    report_type(type_)
    api = api_of(request)
    try:
        job = await api.engine.get(job_id, caller_of(request).org.id)
    except NotFound:
        job = None
    if job is None or not made_through(job, API) or job.request.labels.get(TYPE_LABEL) != type_:
        raise NotFound("report job not found", [FieldError("id", f"no {type_} job {job_id!r}")])
    return job


@post("/jobs", status_code=201, summary="Create a report job")
async def create_job(
    request: AnyRequest, type_: FromPath[str], data: JSONBody[NewReportJob]
) -> ReportJobBody:
    """Start a report of ``type`` over ``timespan``.  A room or channel that does not
    exist (or is another organisation's) is a bad value: 400, since 404 is about jobs."""
    api = api_of(request)
    caller = caller_of(request)
    export = msgspec.structs.replace(
        export_request(type_, data), org_id=caller.org.id, user_id=caller.user.id
    )
    try:
        job = await api.engine.submit(export)
    except NotFound as exc:
        raise InvalidRequest(exc.message, exc.fields) from None
    return job_body(api, request, type_, job)


@get("/jobs/{job_id:str}", summary="Get a report job", status_code=200)
async def get_job(
    request: AnyRequest, type_: FromPath[str], job_id: FromPath[str]
) -> Response[ReportJobBody]:
    """The job; once it is done, 300 with its file's URL in ``Location``."""
    api = api_of(request)
    body = job_body(api, request, type_, await report_job(request, type_, job_id))
    if body.job.status != "done":
        return Response(body)
    return Response(body, status_code=300, headers={"Location": body.links.files.href})


@delete("/jobs/{job_id:str}", status_code=204, summary="Delete a report job")
async def delete_job(request: AnyRequest, type_: FromPath[str], job_id: FromPath[str]) -> None:
    """Delete the job (stopping it if it runs) and its file."""
    job = await report_job(request, type_, job_id)
    if job.status not in ("deleted", "expired"):
        await api_of(request).engine.delete(job.id, caller_of(request).org.id)


@get(
    "/files/{job_id:str}", summary="Download a report job's file", response_description=FILE_ANSWER
)
async def download(
    request: AnyRequest, type_: FromPath[str], job_id: FromPath[str], part: FromQuery[int] = 0
) -> Response[Any]:
    """The file of a done job (of its part ``part``, for a report in several parts)."""
    job = await report_job(request, type_, job_id)
    file = next((p.file for p in job.parts if p.part == part), None)
    if job.status != "done" or file is None:
        raise NotFound(
            "report file not found",
            [FieldError("id", f"job {job_id} has no file {part}: it is {job.status}")],
        )
    api = api_of(request)
    return await api.file_answer(request, file, api.link_expiry(job, datetime.now(UTC)))


def talkdesk_error(request: AnyRequest, exc: Exception) -> Response[TalkdeskError]:
    """Any error, as exportd answers it natively, in Talkdesk's body."""
    native = native_error(request, exc)
    body: ErrorBody = native.content
    status = native.status_code or 500
    details = "; ".join(f"{f.name}: {f.message}" for f in body.fields) or body.message
    return Response(
        TalkdeskError(
            code=body.code,
            message=STATUS_MESSAGES.get(status, renamed(body.message, FIELD_NAMES)),
            description=renamed(details, FIELD_NAMES),
            fields=[ProblemField(renamed(f.name, FIELD_NAMES), f.message) for f in body.fields],
        ),
        status_code=status,
        media_type="application/json",
        headers=native.headers,  # a 416's Content-Range
    )


@hookimpl
def exportd_http_routes(api: HttpApi) -> Iterable[Router]:
    """The report job routes."""
    return [
        Router(
            "/data/reports/{type_:str}",
            route_handlers=[create_job, get_job, delete_job, download],
            guards=[requires(PERMISSION)],
            exception_handlers=dict.fromkeys(HANDLERS, talkdesk_error),
            tags=["talkdesk"],
            security=[{"token": []}],
        )
    ]
