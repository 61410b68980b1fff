"""Handing a stop request to the worker through the broker, bounded so the agent's click never hangs."""

from __future__ import annotations

import logging

from django.conf import settings

logger = logging.getLogger(__name__)


def dispatch_remote_stop(*, stop_request_id: int) -> bool:
    """Hand the request to the worker; False when the broker did not take it in time (it stays PENDING
    and the sweeper sends it later).

    The agent's click waits for this, so the publish is bounded: a connection of its own (never the
    pooled one, which carries the worker's longer socket timeout), STOP_PUBLISH_TIMEOUT_SECONDS for
    the TCP connect and for each broker reply, and no retries at any layer. A broker that is down,
    unreachable or stalled (accepts, never answers) costs about that long, never more.
    """
    from ...tasks import send_remote_stop  # the task module imports this one

    bound = settings.STOP_PUBLISH_TIMEOUT_SECONDS
    try:
        with send_remote_stop.app.connection_for_write(
            connect_timeout=bound,
            transport_options={
                "socket_connect_timeout": bound,
                "socket_timeout": bound,
                "max_retries": 0,  # kombu: fail on the first connection error, do not reconnect
                "retry_on_timeout": False,  # redis-py: a reply that does not come is not asked again
            },
        ) as connection:
            send_remote_stop.apply_async(args=[stop_request_id], retry=False, connection=connection)
    except Exception:  # noqa: BLE001 - kombu and redis-py raise several types; the row is safe as PENDING
        logger.warning(
            "could not queue stop request %s; it stays PENDING for the sweeper", stop_request_id, exc_info=True
        )
        return False
    return True
