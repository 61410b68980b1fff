"""Per-CPO concurrency slots, shared by every worker process through the cache (Redis).

A CPO that answers only after 60 s would otherwise occupy every worker thread and make stops for
healthy CPOs wait; with at most N calls in flight per OperatorID, the other slots stay free.
Slots expire on their own, so a killed worker cannot leak one for longer than `ttl`.
"""

import logging
import uuid

from django.core.cache import cache

logger = logging.getLogger(__name__)


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
    """Best effort: with Redis unreachable the slot simply expires after its ttl.

    Never raises, so a call's answer is always recorded even when the slot cannot be given back.
    """
    if key:
        try:
            cache.delete(key)
        except Exception:  # noqa: BLE001 - redis-py and the cache backend raise several types
            logger.warning("could not release %s; it expires by itself", key, exc_info=True)
