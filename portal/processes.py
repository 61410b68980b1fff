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
    niceness: int = 0,
) -> list[str]:
    """argv of `celery -A portal worker` on the thread pool.

    Threads, because a stop spends its time waiting on Hubject: many cheap slots, and the per-CPO
    limit in the stop service keeps one slow CPO from taking them all. `name` is the node name
    (needed when two workers share a host); `quiet` drops the start-up cluster chatter (gossip,
    mingle), which only slows the start of short-lived workers in tests and benchmarks. `niceness`:
    run it at that lower CPU priority (`nice -n`, as systemd's `Nice=`).
    """
    celery = str(Path(sys.executable).parent / "celery")  # the venv's, beside its python
    argv = ["nice", "-n", str(niceness)] if niceness else []
    argv += [celery, "-A", "portal", "worker", "--pool", "threads", "-Q", queues, "--concurrency", str(concurrency)]
    if name:
        argv += ["-n", f"{name}@%h"]
    if quiet:
        argv += ["--without-gossip", "--without-mingle"]
    return [*argv, "--loglevel", loglevel, *extra]


# The inbound appliers' worker (OICP_INBOUND_QUEUE) runs at normal CPU priority. A lower one
# (`nice -n 10`) was measured and made things worse (bench/NOTES.md, issue 16, third pass): the
# applier's database work runs in PostgreSQL's processes at normal priority anyway, so the
# acknowledgements gained nothing, and a descheduled applier holding the audit chain's lock made the
# agents' stops wait for it (sustained 500/s: dispatch p99 461 ms against 269 at normal priority).
INBOUND_WORKER_NICENESS = 0
# Threads of that worker: APPLIERS_PER_PROCESS apply at once (sessions/inbound/queue.py), the rest
# take the kicks that find both busy and return at once.
INBOUND_WORKER_CONCURRENCY = 4


def inbound_worker_command(*, queue: str = "inbound", name: str = "inbound", **options) -> list[str]:
    """argv of the worker that applies pushed notifications and CDRs: its own process, so that its
    CPU-bound batches never hold the GIL the stop worker's threads need."""
    options.setdefault("concurrency", INBOUND_WORKER_CONCURRENCY)
    options.setdefault("niceness", INBOUND_WORKER_NICENESS)
    return celery_worker_command(queues=queue, name=name, **options)


def redis_server_command(*, binary: str = "redis-server", port: int, directory: str) -> list[str]:
    """argv of a Redis for the broker and the cache on loopback: nothing persisted (a restarted
    Redis is an empty one; the stop sweeper and the inbound sweep re-queue what was lost)."""
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory]
