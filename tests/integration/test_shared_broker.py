"""The suite leaves the shared broker as other people's clients need it.

Its tests run after all the others (``tests/conftest.py`` moves them to the end).
"""

from __future__ import annotations

import uuid

from tests.broker import NEEDS_RABBITMQCTL, Outsider, connections_named, shared_rabbitmqctl


@NEEDS_RABBITMQCTL
def test_a_connection_opened_before_the_first_test_is_still_open_and_usable(
    outsider: Outsider,
) -> None:
    assert outsider.connection is not None
    channel = outsider.connection.channel()
    queue = f"test-{uuid.uuid4().hex[:12]}.outsider"
    channel.queue_declare(queue, exclusive=True)
    assert channel.queue_delete(queue) == 0  # no messages in it
    channel.close()

    assert len(connections_named(shared_rabbitmqctl, outsider.name)) == 1
