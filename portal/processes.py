"""The command lines of the processes `make run` starts beside the web server.

`make run` (scripts/run.py), the tests that start real servers and the benchmarks build them here,
so a test of "the worker as deployed" runs the same pool and options as the deployment.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def celery_worker_command(
    *,
    queues: str = "celery",
    concurrency: int,
    name: str = "",
    loglevel: str = "INFO",
    quiet: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """argv of `celery -A portal worker` on the thread pool.

    Threads, because a stop spends its time waiting on Hubject: many cheap slots, and the per-CPO
    limit in the stop service keeps one slow CPO from taking them all. `name` is the node name
    (needed when two workers share a host); `quiet` drops the start-up cluster chatter (gossip,
    mingle), which only slows the start of short-lived workers in tests and benchmarks.
    """
    celery = str(Path(sys.executable).parent / "celery")  # the venv's, beside its python
    argv = [celery, "-A", "portal", "worker", "--pool", "threads", "-Q", queues, "--concurrency", str(concurrency)]
    if name:
        argv += ["-n", f"{name}@%h"]
    if quiet:
        argv += ["--without-gossip", "--without-mingle"]
    return [*argv, "--loglevel", loglevel, *extra]


def redis_server_command(*, binary: str = "redis-server", port: int, directory: str) -> list[str]:
    """argv of a Redis for the broker and the cache on loopback: nothing persisted (a restarted
    Redis is an empty one; the stop sweeper and the inbound sweep re-queue what was lost)."""
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory]
