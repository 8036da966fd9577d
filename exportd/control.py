"""The engine's job commands, and the control socket that carries them in the embedded mode.

:class:`JobCommands` is what every client of the engine's commands offers
(:meth:`~JobCommands.get`, :meth:`~JobCommands.list_jobs`, :meth:`~JobCommands.cancel`,
:meth:`~JobCommands.restart`, :meth:`~JobCommands.delete`, :meth:`~JobCommands.workers`),
whatever carries the
:class:`~exportd.messages.JobCommand`: RabbitMQ (:class:`exportd.client.Client`) or the
control socket of ``exportd serve`` (:class:`SocketClient`).

The control socket is a Unix socket, ``control.sock`` in ``EXPORTD_HOME``, that only
its owner may use (mode 0600); ``exportd serve`` answers on it
(:mod:`exportd.engine.control_socket`).  A client connects, sends one line of JSON and
reads lines of JSON back:

* a :class:`~exportd.messages.JobCommand`, as on the engine's AMQP control queue, is
  answered with one :class:`~exportd.messages.RequestReply`;
* ``{"watch": PATTERN}`` (:class:`Watch`) is answered with a ``RequestReply`` once the
  subscription is bound, then a :class:`~exportd.messages.JobEvent` a line for every
  event whose routing key matches PATTERN, until either side hangs up.
"""

from __future__ import annotations

import abc
import socket
from pathlib import Path
from typing import IO

import msgspec

from exportd.bus.base import BusError
from exportd.config import Settings
from exportd.errors import from_body
from exportd.kernel.validation import validated
from exportd.messages import (
    JobCommand,
    JobEvent,
    JobSnapshot,
    JobStatus,
    RequestReply,
    WorkerSnapshot,
)

SOCKET_NAME = "control.sock"


class Timeout(TimeoutError):
    """An answer or an event did not come in time."""


class Watch(msgspec.Struct, forbid_unknown_fields=True):
    """A subscription to the job events of the control socket."""

    watch: str
    """The routing pattern, as for a queue bound to the events exchange."""


def socket_path(settings: Settings) -> Path:
    """Where ``exportd serve`` listens for commands: ``EXPORTD_HOME/control.sock``."""
    return settings.home_path / SOCKET_NAME


class JobCommands(abc.ABC):
    """The engine's commands on jobs; a subclass carries them to it (:meth:`_command`)."""

    def get(self, job_id: str, *, org_id: str | None = None) -> JobSnapshot:
        """The job ``job_id`` (only if it belongs to ``org_id``, when given).

        ``job_id`` may be the start of an id that no other job's shares (6 characters
        or more).  An unknown job raises :class:`~exportd.errors.NotFound` naming
        ``job_id``.
        """
        return job_of(self._answer(JobCommand(op="get", job_id=job_id, org_id=org_id)))

    def list_jobs(
        self,
        *,
        org_id: str | None = None,
        user_id: str | None = None,
        status: JobStatus | None = None,
        source: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[JobSnapshot], int]:
        """A page of jobs, newest first, and how many match the filters in all.

        ``limit`` is 1 to 1000; a bad value raises :class:`~exportd.errors.InvalidRequest`
        naming it, and nothing is sent.
        """
        command = JobCommand(
            op="list",
            org_id=org_id,
            user_id=user_id,
            status=status,
            source=source,
            limit=limit,
            offset=offset,
        )
        reply = self._answer(command)
        return reply.jobs or [], reply.total or 0

    def cancel(self, job_id: str, *, org_id: str | None = None) -> JobSnapshot:
        """Cancel a job; its workers stop and drop their partial files.  A job that has
        finished raises :class:`~exportd.errors.Conflict`."""
        return job_of(self._answer(JobCommand(op="cancel", job_id=job_id, org_id=org_id)))

    def restart(self, job_id: str, *, org_id: str | None = None) -> JobSnapshot:
        """Run a failed, canceled or expired job again, as a new attempt; another status
        raises :class:`~exportd.errors.Conflict`."""
        return job_of(self._answer(JobCommand(op="restart", job_id=job_id, org_id=org_id)))

    def delete(self, job_id: str, *, org_id: str | None = None) -> JobSnapshot:
        """Delete a job and its files at once."""
        return job_of(self._answer(JobCommand(op="delete", job_id=job_id, org_id=org_id)))

    def workers(self) -> list[WorkerSnapshot]:
        """The workers the engine hears from, and those it lost, by name (see
        :mod:`exportd.engine.worker_registry`)."""
        return self._answer(JobCommand(op="workers")).workers or []

    def _answer(self, command: JobCommand) -> RequestReply:
        """The engine's reply to ``command``, checked first (a Struct's constructor checks
        no limits); an error the reply holds is raised (by :meth:`_command`)."""
        return self._command(validated(command, JobCommand))

    @abc.abstractmethod
    def _command(self, command: JobCommand) -> RequestReply:
        """Send ``command`` to the engine; its reply, whose error, if it holds one, is
        raised."""


class SocketClient(JobCommands):
    """The engine of ``exportd serve`` through its control socket at ``path``.

    Each call connects anew; ``timeout`` bounds the wait for a reply.  Nothing to
    close but the event streams, which close themselves at the end of a ``with``.
    """

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout

    def __enter__(self) -> SocketClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def events(self, pattern: str = "#") -> SocketEvents:
        """Follow the job events whose routing key matches ``pattern``, as
        :meth:`exportd.client.Client.events` does; bound before this returns."""
        connection = self._send(Watch(pattern))
        try:
            self._reply(connection)
        except BaseException:
            connection.close()
            raise
        return SocketEvents(connection)

    def _command(self, command: JobCommand) -> RequestReply:
        with self._send(command) as connection:
            return self._reply(connection)

    def _send(self, message: JobCommand | Watch) -> _Connection:
        """A new connection that has sent ``message``."""
        try:
            connection = _Connection(self.path, self.timeout)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise BusError(
                f"nothing answers on {self.path}: is exportd serve running? (if not, remove "
                "the file, or give --broker)"
            ) from exc
        try:
            connection.send(msgspec.json.encode(message))
        except BaseException:
            connection.close()
            raise
        return connection

    def _reply(self, connection: _Connection) -> RequestReply:
        """The reply on ``connection``; its error, if it holds one, is raised."""
        try:
            line = connection.receive()
        except TimeoutError:
            raise Timeout(f"no reply from exportd serve within {self.timeout} s") from None
        reply = msgspec.json.decode(line, type=RequestReply)
        if reply.error is not None:
            raise from_body(reply.error)
        return reply


class SocketEvents:
    """The job events of a :meth:`SocketClient.events` subscription: iterate to receive
    them, until :meth:`close` (or the end of a ``with`` block).  ``exportd serve``
    stopping raises :class:`~exportd.bus.base.BusError`."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        connection.wait_forever()

    def __iter__(self) -> SocketEvents:
        return self

    def __next__(self) -> JobEvent:
        return msgspec.json.decode(self._connection.receive(), type=JobEvent)

    def __enter__(self) -> SocketEvents:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Hang up: the subscription ends."""
        self._connection.close()


class _Connection:
    """One connection to the control socket, a line of JSON per message."""

    def __init__(self, path: Path, timeout: float) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.settimeout(timeout)
        try:
            self._socket.connect(str(path))
        except BaseException:
            self._socket.close()
            raise
        self._lines: IO[bytes] = self._socket.makefile("rb")

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, line: bytes) -> None:
        """Send ``line`` (JSON holds no newline) and its end."""
        self._socket.sendall(line + b"\n")

    def receive(self) -> bytes:
        """The next line; :class:`~exportd.bus.base.BusError` if the other side hung up."""
        line = self._lines.readline()
        if not line.endswith(b"\n"):
            raise BusError("exportd serve closed the control socket: it stopped")
        return line

    def wait_forever(self) -> None:
        """Wait as long as it takes for each line from now on."""
        self._socket.settimeout(None)

    def close(self) -> None:
        """Close the connection."""
        self._lines.close()
        self._socket.close()


def job_of(reply: RequestReply) -> JobSnapshot:
    """The job a reply holds."""
    if reply.job is None:
        raise BusError("the engine replied with neither a job nor an error")
    return reply.job
