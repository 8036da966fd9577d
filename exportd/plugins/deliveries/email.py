"""The built-in ``email`` delivery: a finished export's files sent over SMTP.

Its settings are the ``[plugins.email]`` table (:class:`EmailConfig`; the old
``[email]`` table still works, with a warning).  Files fit into one message as
attachments up to ``attach_max_bytes`` in all; a file that does not fit goes as
a signed download URL instead.  The message is built with
:class:`email.message.EmailMessage`, so a job name or a file name of any text
cannot break or add headers.  Sending uses the standard library's
:mod:`smtplib`: exportd calls :meth:`EmailDelivery.deliver` in a thread, so a
blocking client costs nothing.

Addresses are checked when a request arrives with ``email-validator`` (RFC 5321
and 5322 syntax, IDNA 2008 domains), so that what is accepted can be sent: a
domain goes in its ASCII (IDNA) form, and a local part beyond ASCII
(``ännä@example.com``) needs a server that offers SMTPUTF8 (RFC 6531).  What
retrying cannot fix (an address or a name the message cannot carry, a server
without SMTPUTF8 for such an address, a 5xx refusal) raises
:class:`~exportd.Undeliverable`, and the delivery is given up.

Every process loads this plugin, and most never send a message: ``email-validator``
(some 45 ms to import), :mod:`smtplib` (with :mod:`ssl`) and the message classes are
imported where they are used.
"""

from __future__ import annotations

import email.errors
import unicodedata
from collections.abc import Iterable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Annotated, Literal, NamedTuple

import msgspec

from exportd import (
    ConfigError,
    Delivery,
    DeliveryContext,
    DeliveryMethod,
    FileInfo,
    InvalidRequest,
    JobSnapshot,
    Undeliverable,
    hookimpl,
)

if TYPE_CHECKING:
    import smtplib
    from email.headerregistry import Address
    from email.message import EmailMessage
    from email.policy import EmailPolicy

MAX_RECIPIENTS = 50
LINE_BREAKING = frozenset({"Zl", "Zp"})
"""Unicode's line and paragraph separators (U+2028, U+2029), which :meth:`str.splitlines`
and the :mod:`email` package take for line breaks, as they do the controls (``C*``)."""
UTF8_OPTIONS = ["SMTPUTF8", "BODY=8BITMIME"]
"""The ``MAIL FROM`` options of an SMTPUTF8 message (RFC 6531 servers take 8BITMIME)."""
Seconds = Annotated[float, msgspec.Meta(gt=0)]


@cache
def message_policy(*, utf8: bool) -> EmailPolicy[EmailMessage]:
    """How a message is written: with ``utf8`` (an address beyond ASCII, for a server
    that offers SMTPUTF8) headers in UTF-8; else headers beyond ASCII as RFC 2047 encoded
    words and bodies in 7 bits (quoted-printable or base64), for any SMTP server."""
    import email.policy

    return email.policy.SMTPUTF8 if utf8 else email.policy.SMTP.clone(cte_type="7bit")


class EmailConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The SMTP server that sends finished exports by email (``[plugins.email]``), for
    requests with ``delivery.type = "email"``; see ``docs/delivery.md``."""

    host: str = ""
    """The SMTP server's host name; empty: email delivery is off (such requests are refused)."""

    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 587
    """The SMTP server's port (587 for ``starttls``, 465 for ``tls``, 25 for ``none``)."""

    tls: Literal["none", "starttls", "tls"] = "starttls"
    """``starttls``: upgrade a plain connection; ``tls``: TLS from the start (SMTPS);
    ``none``: no encryption (a relay on the same host only)."""

    username: str = ""
    """The login name, if the server wants one; empty: no login."""

    password: str = ""
    """The password of ``username``."""

    sender: Annotated[str, msgspec.Meta(pattern=r"^[^@\s<>]+@[^@\s<>]+$")] = "exportd@localhost"
    """The ``From`` address: a plain address, ``name@domain``."""

    subject: Annotated[str, msgspec.Meta(min_length=1)] = "Your export {name} is ready"
    """The subject; ``{name}`` stands for the job's name (or its id)."""

    attach_max_bytes: Annotated[int, msgspec.Meta(ge=0)] = 10 * 1024 * 1024
    """The most bytes of files one message carries as attachments; a file that does not
    fit is sent as a signed download link instead (needs ``http.public_url``)."""

    timeout: Seconds = 30.0
    """Seconds an SMTP connection and each of its commands may take."""

    retry_interval: Seconds = 30.0
    """Seconds between two attempts at a message while the SMTP server is down or
    answers with a temporary (4xx) error."""


def printable(text: str) -> str:
    """``text`` with control characters and line separators (every line break) as spaces."""
    return "".join(
        " "
        if (category := unicodedata.category(char)).startswith("C") or category in LINE_BREAKING
        else char
        for char in text
    )


class Mailbox(NamedTuple):
    """An address as a message carries it: its local part as it is, its domain in ASCII
    (IDNA), so that only a local part beyond ASCII needs SMTPUTF8."""

    local_part: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local_part}@{self.domain}"

    @property
    def smtputf8(self) -> bool:
        """Whether the address needs a server that offers SMTPUTF8."""
        return not self.local_part.isascii()

    @property
    def header(self) -> Address:
        """The address for a ``From`` or ``To`` header."""
        from email.headerregistry import Address

        return Address(username=self.local_part, domain=self.domain)


def checked_address(address: str) -> Mailbox:
    """``address`` parsed and normalised; :class:`~email_validator.EmailNotValidError` (a
    :class:`ValueError`) saying why it is no address a message can carry."""
    from email_validator import EmailNotValidError, validate_email

    found = validate_email(address, check_deliverability=False, allow_smtputf8=True)
    if "=?" in found.local_part:
        # The email package would decode it, and show another address (RFC 2047, 5).
        raise EmailNotValidError("an encoded word (=?...?=) may not stand in an address")
    return Mailbox(found.local_part, found.ascii_domain)


def sender_address(sender: str) -> Mailbox:
    """The ``sender`` setting (``name@domain``, which the settings check) as a mailbox;
    :class:`~exportd.ConfigError` naming the key if its domain has no ASCII form."""
    local_part, _, domain = sender.rpartition("@")
    try:
        return Mailbox(local_part, domain.encode("idna").decode("ascii"))
    except UnicodeError as exc:
        raise ConfigError.field("plugins.email.sender", f"bad domain {domain!r}: {exc}") from None


class EmailDelivery(DeliveryMethod):
    """Sends a done job's files to ``delivery.to`` through the SMTP server of
    ``[plugins.email]``."""

    name = "email"
    description = "the files by email (attachments, or download links when too large)"

    def __init__(self, settings: EmailConfig) -> None:
        self.settings = settings
        self.retry_interval = settings.retry_interval
        self.sender = sender_address(settings.sender)

    def validate(self, delivery: Delivery) -> None:
        """Email delivery must be configured, and ``delivery.to`` hold 1 to 50 plain
        addresses (``name@domain``) that a message can carry."""
        self.recipients(delivery)

    def recipients(self, delivery: Delivery) -> list[Mailbox]:
        """The addresses of ``delivery.to``, checked and normalised;
        :class:`~exportd.InvalidRequest` naming the field (``delivery.to[1]``) if one
        is no address, or if email delivery is off."""
        if not self.settings.host:
            raise InvalidRequest.field(
                "delivery.type", "email delivery is off: exportd has no plugins.email.host"
            )
        if not delivery.to:
            raise InvalidRequest.field("delivery.to", "an email delivery needs an address")
        if len(delivery.to) > MAX_RECIPIENTS:
            raise InvalidRequest.field("delivery.to", f"at most {MAX_RECIPIENTS} addresses")
        from email_validator import EmailNotValidError

        found: list[Mailbox] = []
        for index, address in enumerate(delivery.to):
            try:
                found.append(checked_address(address))
            except EmailNotValidError as exc:
                raise InvalidRequest.field(
                    f"delivery.to[{index}]", f"{address!r} is not an email address: {exc}"
                ) from None
        return found

    def deliver(self, job: JobSnapshot, ctx: DeliveryContext) -> None:
        """Compose the message and hand it to the SMTP server; :class:`Undeliverable` if
        it cannot be composed (an address accepted before exportd checked as it does now,
        say), since trying again would not change that."""
        try:
            recipients = self.recipients(job.request.delivery)
        except InvalidRequest as exc:
            wrong = "; ".join(f"{field.name}: {field.message}" for field in exc.fields)
            raise Undeliverable(wrong or str(exc)) from exc
        utf8 = any(address.smtputf8 for address in [self.sender, *recipients])
        try:
            message = self.compose(job, ctx, recipients, utf8=utf8)
            data = message.as_bytes()
        except (ValueError, UnicodeError, email.errors.MessageError) as exc:
            raise Undeliverable(f"the message cannot be composed: {exc}") from exc
        self.send(data, recipients, utf8=utf8)

    def compose(
        self,
        job: JobSnapshot,
        ctx: DeliveryContext,
        recipients: Sequence[Mailbox],
        *,
        utf8: bool = False,
    ) -> EmailMessage:
        """The message for ``job`` to ``recipients``: its files attached while they fit,
        linked otherwise; in UTF-8 headers with ``utf8`` (for SMTPUTF8), else in ASCII."""
        from email.message import EmailMessage
        from email.utils import formatdate

        name = printable(job.request.name or f"export {job.id}")
        message = EmailMessage(policy=message_policy(utf8=utf8))
        message["From"] = self.sender.header
        message["To"] = [address.header for address in recipients]
        message["Subject"] = printable(self.settings.subject.replace("{name}", name))
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
                    f"{file.name} ({file.size} bytes) is larger than "
                    "plugins.email.attach_max_bytes and exportd has no http.public_url to link it"
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

    def send(self, data: bytes, recipients: Sequence[Mailbox], *, utf8: bool) -> None:
        """Hand the message ``data`` for ``recipients`` to the SMTP server (with SMTPUTF8
        if ``utf8``); :class:`Undeliverable` when it cannot carry it (no SMTPUTF8) or
        refuses it for good (5xx on the recipients or the content), any other error
        when it may take it later."""
        import smtplib
        import ssl

        try:
            with self._connect() as smtp:
                if self.settings.tls == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if self.settings.username:
                    smtp.login(self.settings.username, self.settings.password)
                smtp.ehlo_or_helo_if_needed()
                if utf8 and not smtp.has_extn("smtputf8"):
                    wide = [str(a) for a in [self.sender, *recipients] if a.smtputf8]
                    raise Undeliverable(
                        f"{', '.join(wide)}: an address beyond ASCII needs SMTPUTF8, which "
                        f"the SMTP server {self.settings.host} does not offer"
                    )
                smtp.sendmail(
                    str(self.sender),
                    [str(address) for address in recipients],
                    data,
                    mail_options=UTF8_OPTIONS if utf8 else [],
                )
        except smtplib.SMTPRecipientsRefused as exc:
            if all(code >= 500 for code, _ in exc.recipients.values()):
                raise Undeliverable(f"the SMTP server refused every recipient: {exc}") from exc
            raise
        except smtplib.SMTPDataError as exc:
            if exc.smtp_code >= 500:
                raise Undeliverable(f"the SMTP server refused the message: {exc}") from exc
            raise

    def _connect(self) -> smtplib.SMTP:
        import smtplib
        import ssl

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
def exportd_plugin_config() -> type[EmailConfig]:
    """The SMTP server and the messages' shape: ``[plugins.email]``."""
    return EmailConfig


@hookimpl
def exportd_deliveries(config: EmailConfig) -> Iterable[DeliveryMethod]:
    """The email delivery, configured from ``[plugins.email]``."""
    return [EmailDelivery(config)]
