"""Per-CPO concurrency slots, shared by every worker process through the cache (Redis).

A CPO that answers only after 60 s would otherwise occupy every worker thread and make stops for
healthy CPOs wait; with at most N calls in flight per OperatorID, the other slots stay free.
Slots expire on their own, so a killed worker cannot leak one for longer than `ttl`.
"""

import uuid

from django.core.cache import cache


def acquire_operator_slot(operator_id: str, *, limit: int, ttl: float) -> str | None:
    """Return the key of a free slot for this operator, or None when all are taken."""
    token = uuid.uuid4().hex
    for index in range(limit):
        key = f"oicp-slot:{operator_id}:{index}"
        # cache.add is an atomic set-if-absent (SET NX on Redis).
        if cache.add(key, token, timeout=max(1, int(ttl))):
            return key
    return None


def release_operator_slot(key: str | None) -> None:
    if key:
        cache.delete(key)
