"""One message's writes as a step of the caller's transaction: a savepoint, except in an optimistic batch.

Applied alone (request mode, the CDR pull) or carefully, a message's writes are a savepoint inside
the caller's transaction, so a message that fails leaves that transaction usable. The worker applies
a batch optimistically first (`without_savepoints`): no savepoints at all, half the statements of a
message (a SAVEPOINT and a RELEASE for each step); one failure then fails the whole batch, which
is rolled back and applied again, carefully (sessions/inbound/applying.py).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction

_savepoints = contextvars.ContextVar("inbound_message_savepoints", default=True)


def message_step():
    """`transaction.atomic()` for a message's writes; without a savepoint in an optimistic batch."""
    return transaction.atomic(savepoint=_savepoints.get())


@contextmanager
def without_savepoints() -> Iterator[None]:
    token = _savepoints.set(False)
    try:
        yield
    finally:
        _savepoints.reset(token)
