"""gunicorn's configuration: `gunicorn portal.wsgi -c python:portal.gunicorn_conf --bind ADDRESS`.

`make run` starts the web server this way, and so should a deployment (README, "Scaling out").

Threads (gthread), not sync workers: a sync worker is held by every connection it accepts until
the client sends a whole request or the worker timeout (30 s) kills it, so two idle or half-open
connections kept `/healthz` from answering for 34 s. A gthread worker waits for a new connection's
first bytes in a thread for at most 5 s, then parks it in its event loop, where an idle or kept-alive
connection costs no thread. A connection that sends part of a request and goes quiet keeps its
thread while gunicorn reads the rest; READ_TIMEOUT_SECONDS ends that wait, and enough threads
(WEB_THREADS) keep requests flowing meanwhile. Measured (tests/test_health.py): /healthz answers in
~0.01 s with 50 such connections open; with sync workers it did not answer within 60 s.
"""

import logging
import os
import socket
import struct

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

from django.conf import settings  # noqa: E402 - the settings module is the only reader of the environment

worker_class = "gthread"
workers = settings.WEB_CONCURRENCY
threads = settings.WEB_THREADS
# An idle kept-alive connection is closed after this many seconds (it costs no thread meanwhile).
keepalive = 5
# gthread workers answer the master's heartbeat from their event loop; a request may take longer.
timeout = 30
# On SIGTERM, requests in progress get this long to finish (below `make run`'s 15 s before SIGKILL).
graceful_timeout = 10
# A connection that sends part of a request and then nothing is closed after this many seconds
# without a byte (a per-read limit on the accepted socket, SO_RCVTIMEO, inherited from the listener).
READ_TIMEOUT_SECONDS = 10
# No gunicornc control socket: the portal does not use it, and every gunicorn on the machine (make
# run, the tests' servers) would otherwise share ~/.gunicorn/gunicorn.ctl.
control_socket_disable = True


class _QuietReadTimeouts(logging.Filter):
    """A read that hit READ_TIMEOUT_SECONDS is logged by gunicorn as "Socket error processing
    request." with a traceback (errno EAGAIN); say it in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BlockingIOError):
            record.msg, record.args, record.exc_info, record.exc_text = (
                "Closed a connection that sent no complete request within %s s",
                (READ_TIMEOUT_SECONDS,),
                None,
                None,
            )
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def post_worker_init(worker) -> None:
    timeval = struct.pack("ll", READ_TIMEOUT_SECONDS, 0)
    for listener in worker.sockets:
        listener.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    worker.log.error_log.addFilter(_QuietReadTimeouts())
