"""Handing a stop request to the worker through the broker, bounded so the agent's click never hangs."""

from __future__ import annotations

import logging
import threading

from django.conf import settings

logger = logging.getLogger(__name__)

# One publishing connection per thread (kombu connections are not thread-safe), kept between
# clicks: opening one per click (TCP connect, channel set-up, declaring the queue again) was most of
# the click's cost, 52 ms of 87 ms measured with cProfile on a loaded machine (bench/RESULTS.md).
_publishing = threading.local()


def dispatch_remote_stop(*, stop_request_id: int) -> bool:
    """Hand the request to the worker; False when the broker did not take it in time (it stays PENDING
    and the sweeper sends it later).

    The agent's click waits for this, so the publish is bounded: a connection of its own (never the
    pooled one, which carries the worker's longer socket timeout), STOP_PUBLISH_TIMEOUT_SECONDS for
    the TCP connect and for each broker reply, and no retries inside kombu or redis-py. A broker that
    is down, unreachable or stalled (accepts, never answers) costs about that long, never more.
    A kept connection that failed is closed and never used again. (A Redis restarted since the last
    click costs nothing: redis-py finds the dead socket when it takes it from its pool and connects
    anew; tests/test_recovery.py.)
    """
    from ...tasks import send_remote_stop  # the task module imports this one

    try:
        send_remote_stop.apply_async(args=[stop_request_id], retry=False, connection=_connection(send_remote_stop.app))
    except Exception:  # noqa: BLE001 - kombu and redis-py raise several types; the row is safe as PENDING
        _drop_connection()
        logger.warning(
            "could not queue stop request %s; it stays PENDING for the sweeper", stop_request_id, exc_info=True
        )
        return False
    return True


def _kept_connection(app):
    """This thread's publishing connection, if it is to the broker the app publishes to now."""
    kept = getattr(_publishing, "kept", None)
    return kept[1] if kept is not None and kept[0] == app.conf.broker_url else None


def _connection(app):
    connection = _kept_connection(app)
    if connection is None:
        _drop_connection()  # one to another broker (tests switch brokers) is closed, not leaked
        bound = settings.STOP_PUBLISH_TIMEOUT_SECONDS
        connection = app.connection_for_write(
            connect_timeout=bound,
            transport_options={
                "socket_connect_timeout": bound,
                "socket_timeout": bound,
                "max_retries": 0,  # kombu: fail on the first connection error, do not reconnect
                "retry_on_timeout": False,  # redis-py: a reply that does not come is not asked again
            },
        )
        _publishing.kept = (app.conf.broker_url, connection)
    return connection


def _drop_connection() -> None:
    kept = getattr(_publishing, "kept", None)
    _publishing.kept = None
    if kept is not None:
        try:
            kept[1].close()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail in several ways
            logger.debug("closing a failed publishing connection failed", exc_info=True)
