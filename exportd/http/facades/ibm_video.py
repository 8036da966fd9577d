"""IBM Video-compatible Q&A exports (seed ``004``): ``/channels/{channelId}/qna/exports``.

An IBM export is exportd's ``qna`` source, in the ``json`` format, over the
channel's rooms from ``start_date`` to ``end_date`` (Unix seconds).  The source
splits a channel into parts of at most 25 rooms and IBM lists one task per part,
so **each part of a job is a task**, whose numeric id is
``job number * 100000 + part index`` (the job number is the job store's stable
``number``; a channel would need 2.5 million rooms to overflow it).  The jobs are
labelled ``api=ibm-video`` and ``channel_id=<the channel>``: a channel's listing
holds only its exports made through this API.  ``part`` counts from 1.

The job's ``number`` is generic (migration 3: a stable whole number for any job, for
any API whose ids are numeric); the task ids built on it, and which parts are
tasks, are this facade's.  Deleting a task deletes its part alone, and its file:
the export's other tasks stay listed and downloadable, and the export's job is
deleted with its last task.  Restarting a task restarts its whole export (every
task not deleted), as exportd runs a job as one.

* ``GET /channels/{channelId}/qna/exports.json?page=1&pagesize=50``: the channel's
  tasks, newest export first, ``{"exports": [...], "paging": {previous, next,
  page_count, item_count}}``.
* ``POST /channels/{channelId}/qna/exports.json`` with the form-encoded
  ``start_date`` and ``end_date``: 200 and ``{"exports": [...]}``, a task per part.
* ``GET /channels/{channelId}/qna/exports/{taskId}.json``: ``{"export": {...}}``.
* ``DELETE /channels/{channelId}/qna/exports/{taskId}.json``: 204.
* ``POST /channels/{channelId}/qna/exports/{taskId}/restart.json``: ``{"export": ...}``
  of a failed or expired export run again (another status is 400 ``bad_request``).

A task's ``status`` is its part's: ``init`` (created), ``pending`` (processing,
uploading), ``completed`` (done), ``failed`` (failed, canceled).  An export
expires ``engine.file_lifetime`` (24 h) after it completed: then ``is_expired``
is true, it has no ``download_url`` and stays listed until deleted.  Until it
completes, ``expires_at`` is ``requested_at`` + that lifetime, the soonest it
can expire.  ``file_size`` and ``download_url`` (a signed URL that needs no
token, valid until the export expires: while ``is_expired`` is false) come once
the task is completed.

Any valid token may call; its organisation needs an active subscription and the
``qna`` benefit.  Errors are ``{"error": VALUE, "error_description": TEXT}``:
400 ``bad_request`` (a bad value, named in the description), 401
``invalid_token``, 402 ``invalid_request`` (no ``qna`` benefit, or no active
subscription), 403 ``lack_of_ownership`` (another organisation's channel), 404
``not_found`` (no such channel or task), 503 ``service_unavailable`` (a failure on
exportd's side, such as an unreadable data store).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, NamedTuple

import msgspec
from litestar import Response, Router, delete, get, post
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, QueryParameter

from exportd.engine.lifecycle import JOB_STATUSES
from exportd.engine.store import MAX_PAGE, JobQuery
from exportd.errors import Conflict, ErrorBody, NotFound
from exportd.http.context import (
    MAX_PAGE_NUMBER,
    AnyConnection,
    AnyRequest,
    HttpApi,
    api_of,
    caller_of,
)
from exportd.http.errors import HANDLERS, native_error
from exportd.http.facades.common import made_through, renamed
from exportd.kernel.datastores import data_store
from exportd.kernel.plan import plan_export
from exportd.kernel.validation import convert
from exportd.kernel.window import parse_window
from exportd.messages import API_LABEL, ExportRequest, Interval, JobSnapshot, RequestFields
from exportd.plugins.hookspecs import hookimpl

TASK_SPAN = 100_000
"""A task id is ``job number * TASK_SPAN + part index``."""
SOURCE = "qna"
API = "ibm-video"
"""This API's :data:`~exportd.http.facades.common.API_LABEL`."""
CHANNEL_LABEL = "channel_id"
"""The label that keeps the channel an export is of, to list the channel's exports by."""
LIVE = tuple(status for status in JOB_STATUSES if status != "deleted")
"""The statuses of the exports that are listed."""
BENEFIT = "qna"
PROBE = Interval(start="2000-01-01", end="2000-01-02")
"""Any interval: checking a channel reads no rows."""
STATUS = {
    "created": "init",
    "processing": "pending",
    "uploading": "pending",
    "done": "completed",
    "failed": "failed",
    "canceled": "failed",
}
ERROR_VALUES = {
    400: "bad_request",
    401: "invalid_token",
    402: "invalid_request",
    403: "lack_of_ownership",
    404: "not_found",
    503: "service_unavailable",
}
FIELD_NAMES = {"interval.start": "start_date", "interval.end": "end_date"}


class IbmError(Exception):
    """An answer in IBM's error body with its own status."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


class ErrorAnswer(msgspec.Struct):
    """IBM's error body."""

    error: str
    error_description: str


class ExportWindow(msgspec.Struct, forbid_unknown_fields=True):
    """The form that starts an export: Unix seconds."""

    start_date: int
    end_date: int


class QnaTask(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One part of an export, as IBM shows a task."""

    id: int
    status: str
    requested_at: int
    expires_at: int
    is_expired: bool
    start_date: int
    end_date: int
    part_count: int
    part: int
    file_size: int | None = None
    download_url: str | None = None


class Paging(msgspec.Struct):
    """Where a page of tasks is among the others."""

    previous: str | None
    next: str | None
    page_count: int
    item_count: int


class TaskList(msgspec.Struct):
    """A page of tasks."""

    exports: list[QnaTask]
    paging: Paging


class NewTasks(msgspec.Struct):
    """The tasks of an export just started."""

    exports: list[QnaTask]


class OneTask(msgspec.Struct):
    """One task."""

    export: QnaTask


class Export(NamedTuple):
    """A job made through this API, and its job number."""

    job: JobSnapshot
    number: int


def seconds(moment: datetime) -> int:
    """Unix seconds."""
    return int(moment.timestamp())


def task_id(number: int, part: int) -> int:
    """The id of the task of part ``part`` (from 0) of the job numbered ``number``."""
    return number * TASK_SPAN + part


def tasks_of(api: HttpApi, request: AnyRequest, job: JobSnapshot, number: int) -> list[QnaTask]:
    """The tasks of ``job`` (whose job number is ``number``), one per part not deleted."""
    window = parse_window(job.request.interval, job.request.timezone)
    lifetime = timedelta(seconds=api.settings.engine.file_lifetime)
    links = api.file_links(request, job, until_expiry=True)
    urls = {link.part: link.url for link in links}
    return [
        QnaTask(
            id=task_id(number, part.part),
            status=STATUS[part.status],
            requested_at=seconds(job.created_at),
            expires_at=seconds(job.expires_at or job.created_at + lifetime),
            is_expired=job.status == "expired",
            start_date=seconds(window.start),
            end_date=seconds(window.end),
            part_count=job.part_count,
            part=part.part + 1,
            file_size=part.file.size if part.file else None,
            download_url=urls.get(part.part),
        )
        for part in job.parts
        if part.status != "deleted"
    ]


def task_of(api: HttpApi, request: AnyRequest, job: JobSnapshot, task_id: int) -> QnaTask:
    """The task ``task_id`` of ``job``, which has it (not deleted)."""
    number = task_id // TASK_SPAN
    return next(task for task in tasks_of(api, request, job, number) if task.id == task_id)


def own_channel(api: HttpApi, org_id: str, channel_id: str) -> None:
    """Raise 404 unless the Q&A channel exists, and 403 if it is another organisation's."""
    probe = RequestFields(
        source=SOURCE, format="json", params={"channel_id": channel_id}, interval=PROBE
    )
    try:
        plan_export(
            msgspec.structs.replace(probe, org_id=org_id), api.plugins, data_store(api.settings)
        )
    except NotFound:
        try:  # without an org, the source finds any organisation's channel
            plan_export(probe, api.plugins, data_store(api.settings))
        except NotFound:
            raise IbmError(404, f"Channel {channel_id} not found") from None
        raise IbmError(403, f"Channel {channel_id} is another organisation's") from None


async def checked_channel(request: AnyRequest, channel_id: str) -> str:
    """The caller's organisation, once the channel is found to be its own."""
    org_id = caller_of(request).org.id
    await asyncio.to_thread(own_channel, api_of(request), org_id, channel_id)
    return org_id


def is_of_channel(job: JobSnapshot, channel_id: str) -> bool:
    """Whether ``job`` is a live export of the channel made through this API."""
    return (
        made_through(job, API)
        and job.request.labels.get(CHANNEL_LABEL) == channel_id
        and job.status != "deleted"
    )


async def task_job(request: AnyRequest, channel_id: str, task: str) -> tuple[JobSnapshot, int]:
    """The job of task ``task`` (``123.json``) of the channel, and the task id."""
    org_id = await checked_channel(request, channel_id)
    digits = task.removesuffix(".json")
    if not task.endswith(".json") or not digits.isdigit() or len(digits) > 18:
        raise IbmError(404, f"Task {task} not found")
    task_id = int(digits)
    number, part = divmod(task_id, TASK_SPAN)
    try:
        job = await api_of(request).engine.get_by_number(number, org_id)
    except NotFound:
        job = None
    if (
        job is None
        or not is_of_channel(job, channel_id)
        or part >= job.part_count
        or job.parts[part].status == "deleted"
    ):
        raise IbmError(404, f"Task {task_id} not found")
    return job, task_id


async def channel_exports(api: HttpApi, org_id: str, channel_id: str) -> list[Export]:
    """Every live (not deleted) export of the channel, newest first, with its number.

    The jobs are found by this API's label and the channel's (indexed), read a page of
    the job store at a time: a task is a part, so a page of tasks and their count come
    from all of the channel's exports.
    """
    exports: list[Export] = []
    while True:
        found = await api.engine.list_jobs(
            JobQuery(
                org_id=org_id,
                status=LIVE,
                labels={API_LABEL: API, CHANNEL_LABEL: channel_id},
                limit=MAX_PAGE,
                offset=len(exports),
            )
        )
        exports.extend(Export(job, found.numbers[job.id]) for job in found.jobs)
        if not found.jobs or len(exports) >= found.total:
            return exports


@get("/exports.json", summary="List the channel's export tasks")
async def list_tasks(
    request: AnyRequest,
    channel_id: FromPath[str],
    *,
    page: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_NUMBER)] = 1,
    pagesize: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
) -> TaskList:
    """The tasks of the channel's exports, newest export first, a page at a time; only
    the exports on the page are shown (their download URLs signed)."""
    api = api_of(request)
    org_id = await checked_channel(request, channel_id)
    tasks = [
        (export, part)
        for export in await channel_exports(api, org_id, channel_id)
        for part in export.job.parts
        if part.status != "deleted"
    ]
    shown = tasks[(page - 1) * pagesize : page * pagesize]
    on_page = {export.job.id: export for export, _ in shown}
    made = {
        task.id: task
        for export in on_page.values()
        for task in tasks_of(api, request, export.job, export.number)
    }
    page_count = math.ceil(len(tasks) / pagesize)
    base = f"{api.base_url(request)}/channels/{channel_id}/qna/exports.json?pagesize={pagesize}"
    return TaskList(
        exports=[made[task_id(export.number, part.part)] for export, part in shown],
        paging=Paging(
            previous=f"{base}&page={page - 1}" if 1 < page <= page_count + 1 else None,
            next=f"{base}&page={page + 1}" if page < page_count else None,
            page_count=page_count,
            item_count=len(tasks),
        ),
    )


@post("/exports.json", status_code=200, summary="Start an export")
async def create_export(request: AnyRequest, channel_id: FromPath[str]) -> NewTasks:
    """Export the channel's questions from ``start_date`` to ``end_date`` (form-encoded
    Unix seconds); a task per part."""
    api = api_of(request)
    org_id = await checked_channel(request, channel_id)
    form = await request.form()
    given = convert({name: form.get(name) for name in form}, ExportWindow, strict=False)
    ends = []
    for name in ("start_date", "end_date"):
        try:
            ends.append(datetime.fromtimestamp(getattr(given, name), UTC))
        except (OverflowError, OSError, ValueError):
            raise IbmError(400, f"{name}: out of the supported range") from None
    start, end = ends
    if end <= start:
        raise IbmError(400, "end_date: must be after start_date")
    job = await api.engine.submit(
        ExportRequest(
            source=SOURCE,
            format="json",
            params={"channel_id": channel_id},
            interval=Interval(start=start.isoformat(), end=end.isoformat()),
            org_id=org_id,
            user_id=caller_of(request).user.id,
            labels={API_LABEL: API, CHANNEL_LABEL: channel_id},
        )
    )
    numbers = await api.engine.job_numbers([job.id])
    return NewTasks(exports=tasks_of(api, request, job, numbers[job.id]))


@get("/exports/{task:str}", summary="Get an export task")
async def get_task(request: AnyRequest, channel_id: FromPath[str], task: FromPath[str]) -> OneTask:
    """One task (``{taskId}.json``)."""
    job, task_id = await task_job(request, channel_id, task)
    return OneTask(export=task_of(api_of(request), request, job, task_id))


@delete("/exports/{task:str}", status_code=204, summary="Delete an export task")
async def delete_task(request: AnyRequest, channel_id: FromPath[str], task: FromPath[str]) -> None:
    """Delete the task (its part of the export) and its file; the export goes with its
    last task."""
    job, task_id = await task_job(request, channel_id, task)
    await api_of(request).engine.delete_part(job.id, task_id % TASK_SPAN, job.request.org_id)


@post("/exports/{task:str}/restart.json", status_code=200, summary="Restart an export task")
async def restart_task(
    request: AnyRequest, channel_id: FromPath[str], task: FromPath[str]
) -> OneTask:
    """Run the task's failed or expired export again, every task of it not deleted."""
    job, task_id = await task_job(request, channel_id, f"{task}.json")
    try:
        job = await api_of(request).engine.restart(job.id, job.request.org_id)
    except Conflict as exc:
        raise IbmError(400, f"task {task_id}: {exc.message}") from None
    return OneTask(export=task_of(api_of(request), request, job, task_id))


def qna_caller(connection: AnyConnection, _: BaseRouteHandler) -> None:
    """A route guard: a known token (401) of an organisation with an active subscription
    and the ``qna`` benefit (402)."""
    caller = api_of(connection).identify(connection)
    if not caller.org.active:
        raise IbmError(402, f"organisation {caller.org.id} has no active subscription")
    if BENEFIT not in caller.org.benefits:
        raise IbmError(402, f"organisation {caller.org.id} lacks the {BENEFIT} benefit")
    connection.state.caller = caller


def ibm_error(request: AnyRequest, exc: Exception) -> Response[ErrorAnswer]:
    """Any error in IBM's body: the facade's own, or exportd's native answer."""
    if isinstance(exc, IbmError):
        status, description = exc.status, exc.description
    else:
        native = native_error(request, exc)
        body: ErrorBody = native.content
        status = native.status_code or 500
        details = "; ".join(f"{f.name}: {f.message}" for f in body.fields) or body.message
        description = renamed(details, FIELD_NAMES)
    if status >= 500:  # IBM documents one answer for failures on its side
        status = 503
    value = ERROR_VALUES.get(status, "bad_request")
    return Response(ErrorAnswer(value, description), status_code=status)


@hookimpl
def exportd_http_routes(api: HttpApi) -> Iterable[Router]:
    """The Q&A export routes."""
    return [
        Router(
            "/channels/{channel_id:str}/qna",
            route_handlers=[list_tasks, create_export, get_task, delete_task, restart_task],
            guards=[qna_caller],
            exception_handlers={IbmError: ibm_error, **dict.fromkeys(HANDLERS, ibm_error)},
            tags=["ibm video"],
            security=[{"token": []}],
        )
    ]
