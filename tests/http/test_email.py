"""Email delivery over real SMTP: exportd serving HTTP, its engine, worker and delivery
service, and an aiosmtpd server on a free port that receives what exportd sends.

Also what tests of the Rocket.Chat facade use: :class:`Inbox` and :func:`smtp_settings`.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import io
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from exportd.cli.serve import embedded
from exportd.config.loading import load_settings
from exportd.deliveries.ledger import Entry, Ledger
from exportd.deliveries.service import KEEP_AFTER_EXPIRY, LEDGER_FILE
from exportd.errors import ConfigError, InvalidRequest
from exportd.messages import Delivery, JobSnapshot
from exportd.plugins.api import DeliveryContext, Undeliverable
from exportd.plugins.deliveries.email import EmailConfig, EmailDelivery
from exportd.plugins.manager import Plugins
from tests.http.server import Server, serving
from tests.ports import free_port
from tests.unit.datastore import ROOM, WINDOW

SENDER = "exports@example.com"


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.received: list[tuple[Envelope, EmailMessage]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        """Keep the message, parsed with the standard library."""
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append((envelope, parsed))
        return "250 OK"

    async def wait(self, count: int = 1, timeout: float = 30) -> list[EmailMessage]:
        """The messages once ``count`` have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                await asyncio.sleep(0.02)
        return [message for _, message in self.received]


@pytest.fixture
def inbox_port() -> int:
    """The port the SMTP server listens on (or will)."""
    return free_port()


@pytest.fixture
def inbox(inbox_port: int) -> Iterator[Inbox]:
    """A running SMTP server at 127.0.0.1:``inbox_port``."""
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=inbox_port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


def smtp_settings(port: int, **changes: Any) -> dict[str, Any]:
    """The ``[plugins.email]`` settings for the test SMTP server at ``port``."""
    return {
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "sender": SENDER,
        "retry_interval": 0.2,
        "timeout": 5,
        **changes,
    }


def emailed_logs(to: list[str], **changes: object) -> dict[str, object]:
    """A request body for the test room's chat logs as csv, by email to ``to``."""
    return {
        "source": "rooms",
        "format": "csv",
        "params": {"room_id": ROOM, "type": "logs"},
        "interval": {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()},
        "delivery": {"type": "email", "to": to},
        **changes,
    }


async def finished(server: Server, body: dict[str, object]) -> JobSnapshot:
    """The job ``body`` asks for, once it is finished; its recipients are made users of
    the caller's organisation first (exportd mails no one else)."""
    tenant = server.tenant()
    delivery = body.get("delivery")
    for address in delivery.get("to", []) if isinstance(delivery, dict) else []:
        server.tenants.create_user(tenant.org.id, address.split("@")[0], email=address)
    answer = await server.http.post("/v1/jobs", json=body, headers=tenant.headers)
    assert answer.status_code == 201, answer.text
    job = await server.wait(answer.json()["id"])
    assert job.status == "done"
    return job


def stored(server: Server, job: JobSnapshot) -> bytes:
    """The bytes of the job's (only) stored file."""
    file = job.parts[0].file
    assert file is not None
    return (server.settings.files_path / file.key).read_bytes()


async def test_a_done_job_is_emailed_with_its_file_attached(
    tmp_path: Path, datastore: Path, inbox: Inbox, inbox_port: int
) -> None:
    async with serving(tmp_path, datastore, plugins={"email": smtp_settings(inbox_port)}) as server:
        name = 'Weekly "logs"\r\nBcc: intruder@example.com'
        job = await finished(
            server, emailed_logs(["ann@example.com", "bob@example.com"], name=name)
        )
        [message] = await inbox.wait()
        envelope = inbox.received[0][0]
    # The server stopped: the delivery service finished the SMTP session first.

    assert envelope.rcpt_tos == ["ann@example.com", "bob@example.com"]
    assert message["From"] == SENDER
    assert message["To"] == "ann@example.com, bob@example.com"
    # The name's line break cannot start a header of its own.
    assert message["Subject"] == 'Your export Weekly "logs"  Bcc: intruder@example.com is ready'
    assert message["Bcc"] is None
    assert message["Message-ID"] == f"<{job.id}.{job.attempt}@exportd>"
    [attachment] = list(message.iter_attachments())
    file = job.parts[0].file
    assert file is not None
    assert attachment.get_filename() == file.name
    assert attachment.get_content_type() == "text/csv"
    content = attachment.get_payload(decode=True)
    assert isinstance(content, bytes)
    assert hashlib.sha256(content).hexdigest() == file.sha256
    assert content == stored(server, job)
    body = message.get_body(("plain",))
    assert body is not None
    assert f"{file.name}: attached ({file.rows} rows)" in body.get_content()
    ledger = Ledger(tmp_path / LEDGER_FILE)
    assert ledger.status(job.id, job.attempt) == "sent"
    ledger.close()


async def test_a_file_over_attach_max_bytes_is_sent_as_a_link_that_downloads_it(
    tmp_path: Path, datastore: Path, inbox: Inbox, inbox_port: int
) -> None:
    port = free_port()
    http = {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"}
    email_settings = smtp_settings(inbox_port, attach_max_bytes=10)
    async with serving(tmp_path, datastore, plugins={"email": email_settings}, http=http) as server:
        job = await finished(server, emailed_logs(["ann@example.com"]))
        [message] = await inbox.wait()
        assert list(message.iter_attachments()) == []
        body = message.get_body(("plain",))
        assert body is not None
        [url] = [word for word in body.get_content().split() if word.startswith("http://")]
        assert url.startswith(f"http://127.0.0.1:{port}/v1/files/{job.id}/0?")
        download = await server.http.get(url)

    assert download.status_code == 200
    assert download.content == stored(server, job)
    file = job.parts[0].file
    assert file is not None
    assert hashlib.sha256(download.content).hexdigest() == file.sha256


async def test_a_message_is_delivered_once_the_smtp_server_is_up(
    tmp_path: Path, datastore: Path, inbox_port: int
) -> None:
    async with serving(tmp_path, datastore, plugins={"email": smtp_settings(inbox_port)}) as server:
        job = await finished(server, emailed_logs(["ann@example.com"]))
        await asyncio.sleep(0.5)  # a few tries against the closed port
        ledger = Ledger(tmp_path / LEDGER_FILE)
        assert ledger.status(job.id, job.attempt) == "pending"

        handler = Inbox()
        controller = Controller(handler, hostname="127.0.0.1", port=inbox_port)
        controller.start()
        try:
            [message] = await handler.wait()
        finally:
            controller.stop()
        async with asyncio.timeout(10):  # the SMTP session ends after the message
            while ledger.status(job.id, job.attempt) != "sent":
                await asyncio.sleep(0.02)
        ledger.close()
    assert message["To"] == "ann@example.com"
    assert len(handler.received) == 1


async def test_a_delivery_cut_short_by_a_stop_is_made_at_the_next_start(
    tmp_path: Path, datastore: Path, inbox_port: int
) -> None:
    async with serving(tmp_path, datastore, plugins={"email": smtp_settings(inbox_port)}) as server:
        job = await finished(server, emailed_logs(["ann@example.com"]))
        settings = server.settings
    # The SMTP server was down all along: the delivery waits in the ledger.
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=inbox_port)
    controller.start()
    try:
        async with embedded(settings, Plugins(settings=settings)):
            [message] = await handler.wait()
    finally:
        controller.stop()
    assert message["Message-ID"] == f"<{job.id}.{job.attempt}@exportd>"
    assert len(handler.received) == 1


async def test_a_closed_delivery_is_forgotten_once_its_files_are_long_gone_and_not_sent_again(
    tmp_path: Path, datastore: Path, inbox: Inbox, inbox_port: int
) -> None:
    async with serving(tmp_path, datastore, plugins={"email": smtp_settings(inbox_port)}) as server:
        job = await finished(server, emailed_logs(["ann@example.com"]))
        await inbox.wait()
        settings = server.settings
    ledger = Ledger(tmp_path / LEDGER_FILE)
    assert ledger.status(job.id, job.attempt) == "sent"
    # Time passes: the delivery was closed longer ago than the ledger keeps it.
    long_ago = time.time() - settings.engine.file_lifetime - KEEP_AFTER_EXPIRY - 60
    with sqlite3.connect(tmp_path / LEDGER_FILE) as db:
        db.execute("UPDATE deliveries SET updated_at = ?", [long_ago])

    async with embedded(settings, Plugins(settings=settings)):
        async with asyncio.timeout(10):
            while ledger.status(job.id, job.attempt) is not None:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
    ledger.close()
    assert len(inbox.received) == 1


async def test_a_job_without_email_delivery_sends_nothing(
    tmp_path: Path, datastore: Path, inbox: Inbox, inbox_port: int
) -> None:
    async with serving(tmp_path, datastore, plugins={"email": smtp_settings(inbox_port)}) as server:
        body = emailed_logs([])
        body["delivery"] = {"type": "file"}
        job = await finished(server, body)
        await asyncio.sleep(0.3)
    assert inbox.received == []
    ledger = Ledger(tmp_path / LEDGER_FILE)
    assert ledger.status(job.id, job.attempt) is None
    ledger.close()


@pytest.mark.parametrize(
    ("delivery", "field", "message"),
    [
        (Delivery(type="email"), "delivery.to", "an email delivery needs an address"),
        (Delivery(type="email", to=["ann"]), "delivery.to[0]", "'ann' is not an email address"),
        (
            Delivery(type="email", to=["a@b.example\r\nBcc: c@d.example"]),
            "delivery.to[0]",
            "is not an email address",
        ),
        # Each of these passed the check that came before email-validator, and could not
        # be composed: the delivery was retried for ever.
        (
            Delivery(type="email", to=["ann@example.com", "a\x00b@example.com"]),
            "delivery.to[1]",
            "invalid characters before the @-sign: U+0000",
        ),
        (
            Delivery(type="email", to=["=?utf-8?b?Ym9i?=@example.com"]),
            "delivery.to[0]",
            "an encoded word (=?...?=) may not stand in an address",
        ),
        (Delivery(type="email", to=["ann@example"]), "delivery.to[0]", "It should have a period"),
    ],
)
def test_an_email_delivery_without_a_good_address_is_refused(
    delivery: Delivery, field: str, message: str
) -> None:
    settings = load_settings({"EXPORTD_PLUGINS__EMAIL__HOST": "127.0.0.1"})
    with pytest.raises(InvalidRequest) as refused:
        Plugins(settings=settings, entry_points=False).check_delivery(delivery)
    assert refused.value.fields[0].name == field
    assert message in refused.value.fields[0].message


def test_email_delivery_is_refused_while_no_smtp_server_is_configured() -> None:
    plugins = Plugins(settings=load_settings({}), entry_points=False)
    with pytest.raises(InvalidRequest) as refused:
        plugins.check_delivery(Delivery(type="email", to=["ann@example.com"]))
    assert refused.value.fields[0].name == "delivery.type"
    plugins.check_delivery(Delivery(type="file"))  # needs nothing


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tls", "ssl", "must be one of none, starttls, tls; got 'ssl'"),
        ("port", "70000", "must be at most 65535"),
        ("sender", "not an address", "must match the pattern"),
        ("sender", "ann@exa\udcffmple.com", "bad domain"),
        ("attach_max_bytes", "-1", "must be at least 0"),
        ("retry_interval", "0", "must be greater than 0"),
        ("hostname", "smtp.example.com", "unknown field"),
    ],
)
def test_a_bad_email_setting_is_an_error_naming_its_key(key: str, value: str, message: str) -> None:
    settings = load_settings({f"EXPORTD_PLUGINS__EMAIL__{key.upper()}": value})
    with pytest.raises(ConfigError) as refused:
        Plugins(settings=settings, entry_points=False)
    assert refused.value.message.startswith(f"configuration key 'plugins.email.{key}'")
    assert message in refused.value.fields[0].message


def test_the_old_email_table_still_works_with_a_warning_naming_the_new_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "exportd.toml"
    config.write_text('[email]\nhost = "smtp.example.com"\nport = 465\n')
    settings = load_settings({"EXPORTD_CONFIG": str(config), "EXPORTD_EMAIL__TLS": "tls"})
    assert settings.plugins["email"] == {"host": "smtp.example.com", "port": 465, "tls": "tls"}
    assert caplog.messages == [
        f"{config}: email.host is deprecated: use plugins.email.host",
        f"{config}: email.port is deprecated: use plugins.email.port",
        "EXPORTD_EMAIL__TLS is deprecated: use EXPORTD_PLUGINS__EMAIL__TLS",
    ]
    method = Plugins(settings=settings, entry_points=False).delivery("email")
    assert isinstance(method, EmailDelivery)
    assert method.settings == EmailConfig(host="smtp.example.com", port=465, tls="tls")


def test_an_email_setting_under_its_old_and_its_new_name_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "exportd.toml"
    config.write_text('[email]\nhost = "a.example.com"\n[plugins.email]\nhost = "b.example.com"\n')
    with pytest.raises(ConfigError) as refused:
        load_settings({"EXPORTD_CONFIG": str(config)})
    assert refused.value.message == f"{config}: email.host is set twice, as plugins.email.host too"
    with pytest.raises(ConfigError) as refused:
        load_settings({"EXPORTD_EMAIL__HOST": "a", "EXPORTD_PLUGINS__EMAIL__HOST": "b"})
    assert refused.value.message == (
        "EXPORTD_EMAIL__HOST is set twice, as EXPORTD_PLUGINS__EMAIL__HOST too"
    )


class FlakyInbox(Inbox):
    """An :class:`Inbox` that answers the first ``refusals`` messages with a 451 (try later)."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        """Refuse for now while refusals are left, else keep the message."""
        if self.refusals > 0:
            self.refusals -= 1
            return "451 4.3.0 try again later"
        return await super().handle_DATA(server, session, envelope)


@contextmanager
def smtp_server(handler: Inbox, port: int, *, smtputf8: bool) -> Iterator[Inbox]:
    """``handler`` serving SMTP at 127.0.0.1:``port``, offering SMTPUTF8 if ``smtputf8``."""
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


async def closed(ledger: Ledger, job: JobSnapshot, timeout: float = 10) -> Entry:
    """The job's delivery, once it is no longer pending."""
    async with asyncio.timeout(timeout):
        while (entry := ledger.entry(job.id, job.attempt)) is None or entry.status == "pending":
            await asyncio.sleep(0.02)
    return entry


async def test_international_addresses_and_names_are_sent_with_smtputf8_and_idna(
    tmp_path: Path, datastore: Path, inbox_port: int
) -> None:
    to = ["ännä@exämple.com", "bob@exämple.com"]
    # A line separator (U+2028) in a name was "Header values may not contain linefeed",
    # retried for ever.
    name = "Wöchentlich\u2028Bcc: intruder@example.com\u2029日本"
    with smtp_server(Inbox(), inbox_port, smtputf8=True) as inbox:
        async with serving(
            tmp_path, datastore, plugins={"email": smtp_settings(inbox_port)}
        ) as server:
            job = await finished(server, emailed_logs(to, name=name))
            [message] = await inbox.wait()
            ledger = Ledger(tmp_path / LEDGER_FILE)
            entry = await closed(ledger, job)
            ledger.close()
    envelope = inbox.received[0][0]
    assert envelope.smtp_utf8
    assert envelope.rcpt_tos == ["ännä@xn--exmple-cua.com", "bob@xn--exmple-cua.com"]
    assert message["To"] == "ännä@xn--exmple-cua.com, bob@xn--exmple-cua.com"
    assert message["Subject"] == "Your export Wöchentlich Bcc: intruder@example.com 日本 is ready"
    assert message["Bcc"] is None
    assert entry == Entry("sent", 1, None)


async def test_an_ascii_local_part_needs_no_smtputf8_and_its_name_is_encoded(
    tmp_path: Path, datastore: Path, inbox_port: int
) -> None:
    with smtp_server(Inbox(), inbox_port, smtputf8=False) as inbox:
        async with serving(
            tmp_path, datastore, plugins={"email": smtp_settings(inbox_port)}
        ) as server:
            await finished(server, emailed_logs(["ann@exämple.com"], name="Überblick\u2028x"))
            [message] = await inbox.wait()
    envelope = inbox.received[0][0]
    assert not envelope.smtp_utf8
    assert isinstance(envelope.original_content, bytes)
    assert envelope.original_content.isascii()  # RFC 2047 words, 7-bit bodies
    assert envelope.rcpt_tos == ["ann@xn--exmple-cua.com"]
    assert message["Subject"] == "Your export Überblick x is ready"


async def test_an_address_beyond_ascii_is_given_up_once_without_smtputf8(
    tmp_path: Path, datastore: Path, inbox_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    with smtp_server(Inbox(), inbox_port, smtputf8=False) as inbox:
        async with serving(
            tmp_path, datastore, plugins={"email": smtp_settings(inbox_port)}
        ) as server:
            job = await finished(server, emailed_logs(["ännä@example.com"]))
            ledger = Ledger(tmp_path / LEDGER_FILE)
            entry = await closed(ledger, job)
            await asyncio.sleep(1)  # five retry intervals: no other try
            assert ledger.entry(job.id, job.attempt) == entry
            ledger.close()
    assert inbox.received == []
    assert entry.status == "given_up"
    assert entry.tries == 1
    assert entry.error is not None
    assert "ännä@example.com: an address beyond ASCII needs SMTPUTF8" in entry.error
    given_up = [r for r in caplog.records if "delivery given up" in r.getMessage()]
    assert len(given_up) == 1
    assert given_up[0].levelname == "ERROR"


async def test_a_transient_smtp_refusal_is_retried_until_the_message_is_taken(
    tmp_path: Path, datastore: Path, inbox_port: int
) -> None:
    with smtp_server(FlakyInbox(refusals=2), inbox_port, smtputf8=False) as inbox:
        async with serving(
            tmp_path, datastore, plugins={"email": smtp_settings(inbox_port)}
        ) as server:
            job = await finished(server, emailed_logs(["ann@example.com"]))
            [message] = await inbox.wait()
            ledger = Ledger(tmp_path / LEDGER_FILE)
            entry = await closed(ledger, job)
            ledger.close()
    assert message["To"] == "ann@example.com"
    assert entry == Entry("sent", 3, None)  # two 451s, retried


async def test_a_recorded_address_that_cannot_be_composed_is_undeliverable_not_retried(
    tmp_path: Path, datastore: Path, inbox: Inbox, inbox_port: int
) -> None:
    # A job accepted before addresses were checked as they are now (or from a trusted
    # upstream system) that names one the message cannot carry.
    async with serving(tmp_path, datastore, plugins={"email": smtp_settings(inbox_port)}) as server:
        job = await finished(server, emailed_logs(["ann@example.com"]))
        await inbox.wait()
    method = EmailDelivery(EmailConfig(**server.settings.plugins["email"]))
    context = DeliveryContext(open_file=lambda key: io.BytesIO(b""), link=lambda part: None)
    for address, why in [
        ("a\x00b@example.com", "delivery.to[0]: 'a\\x00b@example.com' is not an email address"),
        ("=?utf-8?b?Ym9i?=@example.com", "an encoded word (=?...?=) may not stand"),
    ]:
        delivery = msgspec.structs.replace(job.request.delivery, to=[address])
        request = msgspec.structs.replace(job.request, delivery=delivery)
        with pytest.raises(Undeliverable, match=re.escape(why)):
            method.deliver(msgspec.structs.replace(job, request=request), context)
    assert len(inbox.received) == 1
