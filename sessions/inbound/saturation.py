"""Whether the web processes are saturated by Hubject's pushes: the appliers' cue to step aside.

The appliers wait during a burst so that the acknowledgements get the CPU and the database first
(sessions/inbound/queue.py). A burst used to be known by its rate alone (OICP_INBOUND_BURST_RATE),
but appliers at work take half the CPU from the acknowledgements: on 2 cores the endpoint
acknowledged 1,600 messages a second alone and 660-840 with the appliers beside it, below the rate,
so the appliers never saw the burst they were slowing down. What does not change with the appliers'
share is this: during a burst every web process serves one push after the other, without a pause.
Steady traffic leaves pauses (500 a second kept each of 2 processes busy ~40% of the time).

So each web process adds up the time it spends in pushed requests (Django's request signals,
from the handler's start to the response's close) and, when that is SATURATED_SHARE or more of a
WINDOW_SECONDS window, says so in the shared cache for FLAG_SECONDS. A few microseconds a
request and at most one cache write per window; the cache away means "not saturated".
"""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import lru_cache

from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.urls import reverse

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 0.25
SATURATED_SHARE = 0.6
FLAG_SECONDS = 0.5  # twice a window: the next busy window renews it while the burst lasts
FLAG_KEY = "inbound-acknowledgements-saturated"

_local = threading.local()  # the request this thread serves (runserver and gthread serve several)
_lock = threading.Lock()
_window = {"started": time.monotonic(), "busy": 0.0}


@lru_cache(maxsize=1)
def _inbound_prefix() -> str:
    """What the two push endpoints' paths start with (portal/urls.py names them)."""
    paths = [reverse("oicp-charging-notifications"), reverse("oicp-charge-detail-record", args=["X"])]
    return os.path.commonprefix(paths)


def _started(sender, environ=None, **kwargs) -> None:
    path = (environ or {}).get("PATH_INFO", "")
    _local.started = time.monotonic() if path.startswith(_inbound_prefix()) else None


def _finished(sender, **kwargs) -> None:
    started = getattr(_local, "started", None)
    if started is None:
        return
    _local.started = None
    pushed_for(time.monotonic() - started)


def pushed_for(seconds: float, *, now: float | None = None) -> None:
    """Count one pushed request's time; flag the process saturated at the end of a busy window."""
    now = time.monotonic() if now is None else now
    with _lock:
        _window["busy"] += seconds
        length = now - _window["started"]
        if length < WINDOW_SECONDS:
            return
        share = _window["busy"] / length
        _window["started"], _window["busy"] = now, 0.0
    if share >= SATURATED_SHARE:
        try:
            cache.set(FLAG_KEY, time.time() + FLAG_SECONDS, timeout=2)
        except Exception:  # noqa: BLE001 - the cache away: the appliers go by the rate alone
            logger.debug("could not flag the acknowledgements as saturated", exc_info=True)


def acknowledgements_saturated() -> bool:
    """A web process was busy with pushes SATURATED_SHARE of its last window (FLAG_SECONDS ago at most)."""
    try:
        until = cache.get(FLAG_KEY)
    except Exception:  # noqa: BLE001
        return False
    return until is not None and until > time.time()


def connect() -> None:
    request_started.connect(_started, dispatch_uid="inbound-saturation-started")
    request_finished.connect(_finished, dispatch_uid="inbound-saturation-finished")
