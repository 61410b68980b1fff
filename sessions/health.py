"""`/healthz` for load balancers: is the database, the broker and a worker there?

No login, GET/HEAD only. 200 when all three are "ok", 503 otherwise, and the body is exactly
{"database": "ok"|"error", "broker": ..., "worker": ...}: no versions, host names or exception
texts (failures go to the log instead). The worker check is a Celery control ping with a short
timeout; its result is kept for WORKER_CHECK_TTL seconds per process, so a load balancer polling
every second does not broadcast a ping to every worker every second.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

OK, ERROR = "ok", "error"
BROKER_TIMEOUT_SECONDS = 1.0
WORKER_PING_TIMEOUT_SECONDS = 1.0
WORKER_CHECK_TTL = 10.0

_worker_lock = threading.Lock()
_worker_cache: dict[str, tuple[float, str]] = {}  # broker URL -> (checked at, result)


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:  # noqa: BLE001 - any failure means "not healthy"; the detail goes to the log only
        logger.warning("health check: database unavailable", exc_info=True)
        return ERROR
    return OK


def check_broker() -> str:
    from portal.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_SECONDS)
            # Connecting is lazy for Redis: make one round trip so a dead server is noticed.
            conn.default_channel.client.ping()
    except Exception:  # noqa: BLE001
        logger.warning("health check: broker unavailable", exc_info=True)
        return ERROR
    return OK


def check_worker() -> str:
    """Whether at least one worker answers a ping; cached for WORKER_CHECK_TTL seconds."""
    from portal.celery import app

    key = app.conf.broker_url
    with _worker_lock:  # one ping at a time per process; the others wait and reuse its answer
        cached = _worker_cache.get(key)
        if cached and time.monotonic() - cached[0] < WORKER_CHECK_TTL:
            return cached[1]
        try:
            replies = app.control.ping(timeout=WORKER_PING_TIMEOUT_SECONDS)
            result = OK if replies else ERROR
        except Exception:  # noqa: BLE001
            logger.warning("health check: worker ping failed", exc_info=True)
            result = ERROR
        if result == ERROR:
            logger.warning("health check: no Celery worker answered within %ss", WORKER_PING_TIMEOUT_SECONDS)
        _worker_cache[key] = (time.monotonic(), result)
        return result


def reset_worker_cache() -> None:
    with _worker_lock:
        _worker_cache.clear()


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    database = check_database()
    broker = check_broker()
    # Without a broker no worker can be reached; do not wait for a ping that cannot arrive.
    worker = check_worker() if broker == OK else ERROR
    body = {"database": database, "broker": broker, "worker": worker}
    return JsonResponse(body, status=200 if all(value == OK for value in body.values()) else 503)
