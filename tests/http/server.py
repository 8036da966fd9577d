"""A running exportd with its HTTP API, for tests that talk to it over real HTTP.

The engine and a worker run on the in-process bus in the test's event loop,
uvicorn serves the API on a free port of 127.0.0.1, and ``httpx`` talks to it
over TCP, as any HTTP client would.  The data store is the hand-written one of
:mod:`tests.unit.datastore`; its organisations (``ORG``, ``OTHER_ORG``) exist as
tenants with one user each.

    async def test_something(server: Server) -> None:
        tenant = server.tenant()                    # ORG, a user, a token: reports
        answer = await server.http.post("/v1/jobs", json=..., headers=tenant.headers)
        job = await server.wait(answer.json()["id"])
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec

from exportd.cli.serve import embedded
from exportd.config import Settings
from exportd.engine.service import Engine
from exportd.errors import NotFound
from exportd.http.app import serving_http
from exportd.http.tenants import Org, TenantStore, User
from exportd.messages import JobSnapshot
from exportd.plugins.manager import Plugins
from tests.integration.runtime import FINAL, settings_in
from tests.unit import toy_plugins
from tests.unit.datastore import ORG, OTHER_ORG


@dataclass(frozen=True)
class Tenant:
    """A user of an organisation and a token of theirs."""

    org: Org
    user: User
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer <token>``."""
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Server:
    """exportd serving HTTP at ``url``; ``http`` is a client of it."""

    url: str
    engine: Engine
    settings: Settings
    tenants: TenantStore
    http: httpx.AsyncClient

    def tenant(
        self,
        org_id: str = ORG,
        permissions: tuple[str, ...] = ("reports",),
        *,
        user_id: str | None = None,
        token: str | None = None,
    ) -> Tenant:
        """A new user (or the user ``user_id``, if it exists) of ``org_id`` and a new token
        of theirs with ``permissions``."""
        user_id = user_id or str(uuid.uuid4())
        try:
            user = self.tenants.user(user_id)
        except NotFound:
            user = self.tenants.create_user(org_id, "Test user", user_id=user_id)
        made = self.tenants.create_token(user.id, list(permissions), token=token)
        return Tenant(org=self.tenants.org(org_id), user=user, token=made.token)

    async def wait(self, job_id: str, timeout: float = 30) -> JobSnapshot:
        """The job once it is finished (done, failed, canceled, deleted or expired)."""
        async with asyncio.timeout(timeout):
            while (job := await self.engine.get(job_id)).status not in FINAL:
                await asyncio.sleep(0.02)
        return job


@asynccontextmanager
async def serving(
    home: Path, datastore: Path, *, toy: bool = False, **changes: Any
) -> AsyncIterator[Server]:
    """exportd with the test data store in ``home``, serving HTTP on a free port; with
    the toy plugins too if ``toy``.  ``changes`` are settings (``http={...}``, say)."""
    shutil.copy(datastore, home / "data.db")
    http_settings = {"listen": "127.0.0.1:0", **changes.pop("http", {})}
    settings = settings_in(home, http=http_settings, **changes)
    plugins = Plugins(settings=settings, extra=[toy_plugins] if toy else [])
    with TenantStore(settings.jobs_path) as tenants:
        tenants.create_org("Acme", org_id=ORG, benefits=["qna"])
        tenants.create_org("Globex", org_id=OTHER_ORG)
        async with (
            embedded(settings, plugins) as engine,
            serving_http(engine, plugins, settings) as url,
        ):
            assert url is not None
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                yield Server(url, engine, settings, tenants, http)


def error_body(answer: httpx.Response) -> dict[str, Any]:
    """The answer's JSON error body, checked to have the one shape every error has."""
    body: dict[str, Any] = answer.json()
    assert set(body) == {"code", "message", "fields"}, body
    assert all(set(field) == {"name", "message"} for field in body["fields"]), body
    return body


def nested_too_deep(body: dict[str, Any], field: str) -> bytes:
    """``body`` as JSON with ``field`` an object holding lists nested 1,000 deep (2 KB):
    deeper than exportd reads, and than the JSON decoder's recursion limit."""
    given = json.dumps({**body, field: {"deep": "here"}})
    return given.replace('"here"', "[" * 1000 + "]" * 1000).encode()


def decoded(answer: httpx.Response, type_: type[Any]) -> Any:
    """The answer's JSON body as ``type_``."""
    return msgspec.json.decode(answer.content, type=type_)
