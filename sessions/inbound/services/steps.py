"""One message's writes as a step of the caller's transaction: a savepoint, or part of a batch's writes.

Applied alone (request mode, the CDR pull) or carefully, a message's writes are a savepoint inside
the caller's transaction, so a message that fails leaves that transaction usable. The worker applies
a batch optimistically first (`batched`): no savepoints, and the writes of all its messages are
collected in a `SessionBatch` and written together at the end (services/batch.py); one failure
then fails the whole batch, which is rolled back and applied again, carefully, message by message
(sessions/inbound/applying.py).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from django.db import transaction

if TYPE_CHECKING:
    from .batch import SessionBatch

_batch: contextvars.ContextVar[SessionBatch | None] = contextvars.ContextVar("inbound_session_batch", default=None)


def current_batch() -> SessionBatch | None:
    """The batch collecting this message's writes, or None: the message writes as it goes."""
    return _batch.get()


def message_step():
    """`transaction.atomic()` for a message's writes; without a savepoint in a batch."""
    return transaction.atomic(savepoint=_batch.get() is None)


@contextmanager
def batched(batch: SessionBatch) -> Iterator[SessionBatch]:
    token = _batch.set(batch)
    try:
        yield batch
    finally:
        _batch.reset(token)
