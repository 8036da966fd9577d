"""The built-in ``email`` delivery: a finished export's files sent over SMTP.

Files fit into one message as attachments up to ``email.attach_max_bytes`` in
all; a file that does not fit goes as a signed download URL instead.  The
message is built with :class:`email.message.EmailMessage`, so a job name or a
file name of any text cannot break or add headers.  Sending uses the standard
library's :mod:`smtplib`: exportd calls :meth:`EmailDelivery.deliver` in a
thread, so a blocking client costs nothing and adds no dependency.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import unicodedata
from collections.abc import Iterable
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

from exportd import (
    DeliveryContext,
    DeliveryMethod,
    InvalidRequest,
    Settings,
    Undeliverable,
    hookimpl,
)
from exportd.config.settings import EmailSettings
from exportd.messages import Delivery, FileInfo, JobSnapshot

ADDRESS = re.compile(r"[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+")
"""A plain address, ``name@domain``: no display name, nothing a header could mistake."""
MAX_RECIPIENTS = 50


def printable(text: str) -> str:
    """``text`` with control characters (line breaks among them) as spaces."""
    return "".join(" " if unicodedata.category(char).startswith("C") else char for char in text)


def addresses(to: Iterable[str]) -> list[Address]:
    """The recipients as header addresses."""
    return [Address(addr_spec=address) for address in to]


class EmailDelivery(DeliveryMethod):
    """Sends a done job's files to ``delivery.to`` through the ``[email]`` SMTP server."""

    name = "email"
    description = "the files by email (attachments, or download links when too large)"

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self.retry_interval = settings.retry_interval

    def validate(self, delivery: Delivery) -> None:
        """Email delivery must be configured, and ``delivery.to`` hold 1 to 50 plain
        addresses."""
        if not self.settings.host:
            raise InvalidRequest.field(
                "delivery.type", "email delivery is off: exportd has no email.host"
            )
        if not delivery.to:
            raise InvalidRequest.field("delivery.to", "an email delivery needs an address")
        if len(delivery.to) > MAX_RECIPIENTS:
            raise InvalidRequest.field("delivery.to", f"at most {MAX_RECIPIENTS} addresses")
        for address in delivery.to:
            if not ADDRESS.fullmatch(address):
                raise InvalidRequest.field(
                    "delivery.to", f"{address!r} is not an email address (name@domain)"
                )

    def deliver(self, job: JobSnapshot, ctx: DeliveryContext) -> None:
        """Compose the message and hand it to the SMTP server."""
        self.validate(job.request.delivery)
        self.send(self.compose(job, ctx))

    def compose(self, job: JobSnapshot, ctx: DeliveryContext) -> EmailMessage:
        """The message for ``job``: its files attached while they fit, linked otherwise."""
        name = printable(job.request.name or f"export {job.id}")
        message = EmailMessage()
        message["From"] = Address(addr_spec=self.settings.sender)
        message["To"] = addresses(job.request.delivery.to)
        message["Subject"] = self.settings.subject.replace("{name}", name)
        message["Date"] = formatdate(usegmt=True)
        # The same id on a message sent again (after a stop mid-way) lets mail clients
        # recognise the duplicate.
        message["Message-ID"] = f"<{job.id}.{job.attempt}@exportd>"
        room = self.settings.attach_max_bytes
        attached: list[FileInfo] = []
        lines = [f"Your export {name} is ready.", ""]
        for part in job.parts:
            file = part.file
            if file is None:
                continue
            if file.size <= room:
                attached.append(file)
                room -= file.size
                lines.append(f"{printable(file.name)}: attached ({file.rows} rows)")
                continue
            url = ctx.link(part.part)
            if url is None:
                raise Undeliverable(
                    f"{file.name} ({file.size} bytes) is larger than email.attach_max_bytes "
                    "and exportd has no http.public_url to link it"
                )
            lines.append(f"{printable(file.name)} ({file.rows} rows, {file.size} bytes): {url}")
        if job.expires_at is not None:
            lines += ["", f"The files can be downloaded until {job.expires_at.isoformat()}."]
        message.set_content("\n".join(lines) + "\n")
        for file in attached:
            with ctx.open_file(file.key) as stored:
                data = stored.read()
            maintype, _, subtype = file.media_type.partition(";")[0].strip().partition("/")
            message.add_attachment(
                data,
                maintype=maintype or "application",
                subtype=subtype or "octet-stream",
                filename=printable(file.name),
            )
        return message

    def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the SMTP server; :class:`Undeliverable` when it refuses it
        for good (5xx on the recipients or the content), any other error when it may
        take it later."""
        try:
            with self._connect() as smtp:
                if self.settings.tls == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if self.settings.username:
                    smtp.login(self.settings.username, self.settings.password)
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            if all(code >= 500 for code, _ in exc.recipients.values()):
                raise Undeliverable(f"the SMTP server refused every recipient: {exc}") from exc
            raise
        except smtplib.SMTPDataError as exc:
            if exc.smtp_code >= 500:
                raise Undeliverable(f"the SMTP server refused the message: {exc}") from exc
            raise

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        if settings.tls == "tls":
            return smtplib.SMTP_SSL(
                settings.host,
                settings.port,
                timeout=settings.timeout,
                context=ssl.create_default_context(),
            )
        return smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)


@hookimpl
def exportd_deliveries(settings: Settings) -> Iterable[DeliveryMethod]:
    """The email delivery, configured from ``[email]``."""
    return [EmailDelivery(settings.email)]
