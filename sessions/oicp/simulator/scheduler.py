"""Background work at its due time: the CPOs' pushes and state changes never run on a handler thread."""

from __future__ import annotations

import heapq
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


class Scheduler:
    """One daemon thread running callables at their due time; each runs in its own daemon thread."""

    def __init__(self, stopping: threading.Event, max_running: int = 8) -> None:
        self._stopping = stopping
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None
        # A portal that answers slowly must not pile up hundreds of push threads.
        self._slots = threading.BoundedSemaphore(max_running)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        with self._cv:
            if self._stopping.is_set():
                return
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), self._seq, fn, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sim-scheduler", daemon=True)
                self._thread.start()
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopping.is_set():
                    wait = self._heap[0][0] - time.monotonic() if self._heap else 0.5
                    if self._heap and wait <= 0:
                        break
                    self._cv.wait(timeout=min(max(wait, 0.001), 0.5))
                if self._stopping.is_set():
                    return
                _, _, fn, args = heapq.heappop(self._heap)
            self._slots.acquire()
            threading.Thread(target=self._call, args=(fn, args), name="sim-push", daemon=True).start()

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a bug in one push must not stop the others
            sys.stderr.write(f"simulator: background job {getattr(fn, '__name__', fn)} failed: {exc!r}\n")
        finally:
            self._slots.release()

    def wake(self) -> None:
        with self._cv:
            self._cv.notify_all()
