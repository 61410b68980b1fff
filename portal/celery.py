"""The Celery application: configuration comes from Django settings (CELERY_ namespace)."""

import functools
import logging
import os
import threading

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")


def _closed_redis_channels_raise_connection_errors() -> None:
    """Workers ride out a Redis outage with work in flight (issue 13; celery 5.7.0, kombu 5.7.0).

    On a lost connection the consumer collects the connection (`kombu.Connection.collect` detaches
    the transport: `transport.client = None`) and then closes it
    (`Consumer.on_connection_error_after_connected`: `ignore_errors(connection, connection.close)`).
    Closing the channel that the failed collect left open restores its unacknowledged messages
    (acks_late tasks still running, countdown messages of scheduled retries), and the Redis
    channel builds its client from `self.connection.client.hostname`: an AttributeError, not a
    connection error, so nothing ignores it and the worker exits with "Unrecoverable error:
    AttributeError("'NoneType' object has no attribute 'hostname'")". A task that finishes later
    acks through the same dead channel and fails the same way. Idle workers have nothing to
    restore, which is why only an outage with work in flight showed it. Similar reports:
    celery/kombu#970 (restore_unacked_once on a closed connection), celery/celery#4652 and #9250
    (AttributeError on reconnection).

    A channel whose connection is gone now raises redis' ConnectionError instead, which every one
    of those paths already handles: close ignores it, a late ack is logged ("Couldn't ack") and
    the message stays in Redis' unacked index until the visibility timeout (then it runs again and
    does nothing: the task is idempotent), and the consumer reconnects with a fresh channel.
    """
    import redis
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._connparams
    if getattr(original, "portal_guard", False):
        return

    @functools.wraps(original)
    def _connparams(self, asynchronous=False):
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.exceptions.ConnectionError("this broker connection was closed; a new one replaces it")
        return original(self, asynchronous=asynchronous)

    _connparams.portal_guard = True
    kombu_redis.Channel._connparams = _connparams


_closed_redis_channels_raise_connection_errors()

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_ready.connect
def _prepare_pool_threads(sender=None, **kwargs) -> None:
    """Start every thread of a threads pool now, each with its database connection and Hubject
    client ready (`prepare_worker_thread`): the pool starts its threads one by one as work arrives,
    and a new thread's first stop paid for opening both (issue 16, bench/NOTES.md).

    Each warm-up waits for the others (a barrier), so the pool has to start all its threads; it
    runs in the pool, so the worker does not wait for it. Other pools are left alone.
    """
    executor = getattr(getattr(sender, "pool", None), "executor", None)
    threads = getattr(executor, "_max_workers", 0)
    if not threads:
        return
    from sessions.stops.services.sending import prepare_worker_thread

    barrier = threading.Barrier(threads)

    def prepare() -> None:
        try:
            prepare_worker_thread()
        except Exception:  # noqa: BLE001 - the database may be down at start: the first stop connects
            logging.getLogger(__name__).warning("could not prepare a worker thread", exc_info=True)
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass

    for _ in range(threads):
        executor.submit(prepare)
