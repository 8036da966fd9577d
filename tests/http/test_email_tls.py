"""Email delivery over TLS: ``[plugins.email] tls = "starttls"`` and ``tls = "tls"`` against a real
aiosmtpd server whose certificate for 127.0.0.1 is signed by a test CA (made with
``trustme``), and that exportd trusts only through ``SSL_CERT_FILE``.

The server refuses logins that do not arrive over TLS and records the TLS version of
each login and message, so these tests fail if exportd skipped TLS.  A certificate
exportd must not trust (another CA's, or one for another host) leaves the delivery
pending, with nothing received and no password sent: exportd neither falls back to
plain text nor skips verification.
"""

from __future__ import annotations

import asyncio
import sqlite3
import ssl
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from exportd.deliveries.ledger import Ledger
from exportd.deliveries.service import LEDGER_FILE
from exportd.messages import JobSnapshot
from tests.http.server import serving
from tests.http.test_email import (
    Inbox,
    emailed_logs,
    finished,
    free_port,
    smtp_settings,
    stored,
)

# The SMTPS server takes logins without aiosmtpd's STARTTLS check (see smtp_server), which
# aiosmtpd warns about on each connection.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

USERNAME = "exportd"
PASSWORD = "correct horse battery staple"

Mode = Literal["starttls", "tls"]


@dataclass(frozen=True)
class Login:
    """One AUTH the server saw: its mechanism, the credentials, the connection's TLS
    version (None on a plain connection), and whether the server accepted it."""

    mechanism: str
    username: str
    password: str
    tls: str | None
    accepted: bool


def tls_version(server: SMTP) -> str | None:
    """The TLS version of the server's connection now; None while it is plain text."""
    transport = server.transport
    ssl_object = None if transport is None else transport.get_extra_info("ssl_object")
    return None if ssl_object is None else str(ssl_object.version())


class SecureInbox(Inbox):
    """An :class:`Inbox` that also authenticates logins (only ``USERNAME``/``PASSWORD``,
    and only over TLS) and records the TLS version each message came over; it serves
    at 127.0.0.1:``port``."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.logins: list[Login] = []
        self.tls: list[str | None] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        """Note the connection's TLS version, then keep the message."""
        self.tls.append(tls_version(server))
        return await super().handle_DATA(server, session, envelope)

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """aiosmtpd's ``authenticator``: the one account, over TLS only."""
        assert isinstance(data, LoginPassword)
        tls = tls_version(server)
        username, password = data.login.decode(), data.password.decode()
        accepted = tls is not None and (username, password) == (USERNAME, PASSWORD)
        self.logins.append(Login(mechanism, username, password, tls, accepted))
        return AuthResult(success=accepted, auth_data=data)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """The test CA that exportd trusts (see :func:`trusted`)."""
    return trustme.CA()


@pytest.fixture(scope="module")
def stranger() -> trustme.CA:
    """Another CA, which exportd does not trust."""
    return trustme.CA()


@pytest.fixture(autouse=True)
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test CA as the only one ``ssl.create_default_context()`` trusts, through
    ``SSL_CERT_FILE`` (and an empty ``SSL_CERT_DIR``)."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    (tmp_path / "no-certs").mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-certs"))
    return path


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server-side TLS context presenting ``cert``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@contextmanager
def smtp_server(mode: Mode, port: int, cert: trustme.LeafCert) -> Iterator[SecureInbox]:
    """A running SMTP server at 127.0.0.1:``port`` presenting ``cert`` that wants a login
    before mail: with ``starttls``, a plain one that refuses all but STARTTLS until the
    connection is upgraded; with ``tls``, one that speaks TLS from the start (SMTPS)."""
    handler = SecureInbox(port)
    context = server_context(cert)
    options: dict[str, Any] = {
        "hostname": "127.0.0.1",
        "port": port,
        "authenticator": handler.authenticate,
        "auth_required": True,
    }
    if mode == "starttls":
        options |= {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
    else:
        # aiosmtpd's auth_require_tls knows only STARTTLS; SecureInbox.authenticate
        # refuses plain-text logins itself.
        options |= {"ssl_context": context, "auth_require_tls": False}
    controller = Controller(handler, **options)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture
def starttls_inbox(ca: trustme.CA) -> Iterator[SecureInbox]:
    """A running STARTTLS server with the test CA's certificate for 127.0.0.1."""
    with smtp_server("starttls", free_port(), ca.issue_cert("127.0.0.1")) as handler:
        yield handler


@pytest.fixture
def smtps_inbox(ca: trustme.CA) -> Iterator[SecureInbox]:
    """A running SMTPS (implicit TLS) server with the test CA's certificate for 127.0.0.1."""
    with smtp_server("tls", free_port(), ca.issue_cert("127.0.0.1")) as handler:
        yield handler


def login_settings(port: int, tls: str) -> dict[str, Any]:
    """``[plugins.email]`` for the test server at ``port`` with ``tls`` and the test
    account."""
    return smtp_settings(port, tls=tls, username=USERNAME, password=PASSWORD)


async def failed_tries(home: Path, job: JobSnapshot, tries: int = 2, timeout: float = 15) -> str:
    """The last error of the job's delivery once exportd has tried it ``tries`` times
    (and failed: it is still pending)."""
    with closing(sqlite3.connect(home / LEDGER_FILE)) as db:
        async with asyncio.timeout(timeout):
            while True:
                row = db.execute(
                    "SELECT status, tries, error FROM deliveries WHERE job_id = ? AND attempt = ?",
                    [job.id, job.attempt],
                ).fetchone()
                if row is not None:
                    status, count, error = row
                    assert status == "pending", f"the delivery is {status}: {error}"
                    if count >= tries:
                        return str(error)
                await asyncio.sleep(0.02)


def ledger_status(home: Path, job: JobSnapshot) -> str | None:
    """The ledger's status of the job's delivery."""
    ledger = Ledger(home / LEDGER_FILE)
    try:
        return ledger.status(job.id, job.attempt)
    finally:
        ledger.close()


def test_the_default_context_trusts_the_test_ca_alone(ca: trustme.CA) -> None:
    # What the tests below rest on: exportd's ssl.create_default_context() reads
    # SSL_CERT_FILE each time it is called.
    [only] = ssl.create_default_context().get_ca_certs(binary_form=True)
    assert only == ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())


async def test_starttls_upgrades_the_connection_before_the_login_and_the_message(
    tmp_path: Path,
    datastore: Path,
    starttls_inbox: SecureInbox,
) -> None:
    settings = login_settings(starttls_inbox.port, "starttls")
    async with serving(tmp_path, datastore, plugins={"email": settings}) as server:
        job = await finished(server, emailed_logs(["ann@example.com"]))
        [message] = await starttls_inbox.wait()
        envelope = starttls_inbox.received[0][0]

    [login] = starttls_inbox.logins
    assert login.accepted
    assert (login.username, login.password) == (USERNAME, PASSWORD)
    assert login.tls in {"TLSv1.2", "TLSv1.3"}
    assert starttls_inbox.tls == [login.tls]
    assert envelope.rcpt_tos == ["ann@example.com"]
    [attachment] = list(message.iter_attachments())
    content = attachment.get_payload(decode=True)
    assert isinstance(content, bytes)
    assert content == stored(server, job)
    assert ledger_status(tmp_path, job) == "sent"


async def test_implicit_tls_speaks_tls_from_the_start(
    tmp_path: Path,
    datastore: Path,
    smtps_inbox: SecureInbox,
) -> None:
    settings = login_settings(smtps_inbox.port, "tls")
    async with serving(tmp_path, datastore, plugins={"email": settings}) as server:
        job = await finished(server, emailed_logs(["ann@example.com"]))
        [message] = await smtps_inbox.wait()

    [login] = smtps_inbox.logins
    assert login.accepted
    assert login.tls in {"TLSv1.2", "TLSv1.3"}
    assert smtps_inbox.tls == [login.tls]
    assert message["To"] == "ann@example.com"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_payload(decode=True) == stored(server, job)
    assert ledger_status(tmp_path, job) == "sent"


class Distrust(NamedTuple):
    """A certificate exportd must refuse: issued by ``issuer`` (a fixture's name) for
    ``host``; ``reason`` is in OpenSSL's verification error."""

    issuer: str
    host: str
    reason: str


@pytest.mark.parametrize("mode", ["starttls", "tls"])
@pytest.mark.parametrize(
    "distrust",
    [
        Distrust("stranger", "127.0.0.1", "unable to get local issuer certificate"),
        Distrust("ca", "smtp.example.com", "IP address mismatch"),
    ],
    ids=["untrusted-ca", "wrong-host"],
)
async def test_a_certificate_exportd_does_not_trust_stops_the_delivery(
    tmp_path: Path,
    datastore: Path,
    request: pytest.FixtureRequest,
    mode: Mode,
    distrust: Distrust,
) -> None:
    port = free_port()
    cert = request.getfixturevalue(distrust.issuer).issue_cert(distrust.host)
    with smtp_server(mode, port, cert) as handler:
        async with serving(
            tmp_path, datastore, plugins={"email": login_settings(port, mode)}
        ) as server:
            job = await finished(server, emailed_logs(["ann@example.com"]))
            error = await failed_tries(tmp_path, job)
            assert ledger_status(tmp_path, job) == "pending"

    assert error.startswith("SSLCertVerificationError:"), error
    assert distrust.reason in error
    assert handler.received == []
    assert handler.logins == []  # the password never left exportd


@pytest.mark.parametrize(
    ("username", "refusal"),
    [
        (USERNAME, "SMTPNotSupportedError: SMTP AUTH extension not supported by server"),
        ("", "SMTPSenderRefused: (530, b'Must issue a STARTTLS command first'"),
    ],
    ids=["with-login", "without-login"],
)
async def test_tls_none_gets_nothing_through_a_server_that_requires_starttls(
    tmp_path: Path,
    datastore: Path,
    starttls_inbox: SecureInbox,
    username: str,
    refusal: str,
) -> None:
    settings = smtp_settings(starttls_inbox.port, tls="none", username=username, password=PASSWORD)
    async with serving(tmp_path, datastore, plugins={"email": settings}) as server:
        job = await finished(server, emailed_logs(["ann@example.com"]))
        error = await failed_tries(tmp_path, job)
        assert ledger_status(tmp_path, job) == "pending"

    assert error.startswith(refusal), error
    assert starttls_inbox.received == []
    assert starttls_inbox.logins == []
