"""Real processes for integration and browser tests: Redis, the Hubject simulator, a Celery worker.

Each runs on a free loopback port and is stopped by its fixture. Missing Debian packages make the
tests skip with a clear message on a developer's machine, and fail in CI (CI=true), where
`make test` must have installed them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import kombu.pools
import pytest
import requests

from portal.processes import celery_worker_command, redis_server_command

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} is not installed (Debian package {package}); `make test` installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class Process:
    """A child process whose output is kept in memory so a failing test can show it."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None):
        self.name = name
        self.lines: deque[str] = deque(maxlen=400)
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for_line(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in line for line in list(self.lines)):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not print {needle!r}:\n" + "\n".join(self.lines))

    def output(self) -> str:
        if self.proc.poll() is not None:
            # Exited: its last lines may still be in the pipe, on their way to the reader thread
            # (a loaded machine showed "stopped." missing right after wait() returned).
            self._reader.join(timeout=5)
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@contextmanager
def redis_server():
    binary = require("redis-server", "redis-server")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="portal-redis-")
    proc = Process(
        "redis",
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
    )
    try:
        proc.wait_for_line("Ready to accept connections", timeout=15)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


class Simulator:
    def __init__(self, url: str):
        self.url = url

    def set_behaviours(self, table: dict) -> None:
        requests.put(f"{self.url}/_sim/behaviours", json=table, timeout=5).raise_for_status()

    def received(self, **filters) -> list[dict]:
        response = requests.get(f"{self.url}/_sim/received", params=filters, timeout=5)
        response.raise_for_status()
        return response.json()

    def clear(self) -> None:
        requests.delete(f"{self.url}/_sim/received", timeout=5).raise_for_status()

    def patch_behaviours(self, table: dict) -> None:
        """Merge entries into the behaviour table (a None entry removes that EVSE or operator)."""
        requests.patch(f"{self.url}/_sim/behaviours", json=table, timeout=5).raise_for_status()

    def add_sessions(self, *charging_sessions) -> None:
        """Make the simulated HBS know the test's sessions, as if it had issued them: like the real
        one, it answers "400 Session is invalid" to a stop for a SessionID it never issued."""
        entries = [{"SessionID": cs.session_id, "EvseID": cs.evse_id} for cs in charging_sessions]
        requests.post(f"{self.url}/_sim/sessions", json=entries, timeout=30).raise_for_status()


@contextmanager
def simulator_process(*extra: str):
    port = free_port()
    proc = Process("simulator", [sys.executable, "-m", "sessions.oicp.simulator", "--port", str(port), *extra])
    try:
        proc.wait_for_line("Hubject simulator listening", timeout=15)
        yield Simulator(f"http://127.0.0.1:{port}")
    finally:
        proc.stop()


def child_env(**values: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PORTAL_TEST_CHILD": "1", "DJANGO_SETTINGS_MODULE": "portal.settings_test", **values})
    return env


@contextmanager
def celery_worker(
    *,
    broker_url: str,
    database_url: str,
    oicp_base_url: str,
    concurrency: int = 8,
    extra_env: dict[str, str] | None = None,
    command: list[str] | None = None,
):
    """A Celery worker process for the test's broker and database; by default one serving every
    queue (`command`: another one, e.g. `inbound_worker_command()` as `make run` starts it)."""
    env = child_env(
        CELERY_BROKER_URL=broker_url,
        DATABASE_URL=database_url,
        OICP_BASE_URL=oicp_base_url,
        CACHE_URL=broker_url.replace("redis://", "rediscache://", 1),
        **(extra_env or {}),
    )
    # One worker serves fresh stops, the retry queue and the inbound appliers' queue alike in tests.
    command = command or celery_worker_command(
        queues="celery,stop-retries,inbound", concurrency=concurrency, quiet=True
    )
    proc = Process("worker", command, env)
    try:
        proc.wait_for_line("ready.", timeout=60)
        yield proc
    finally:
        proc.stop()


def database_url_for_children() -> str:
    """The URL of the database this test run uses, for processes the tests start."""
    from django.db import connection

    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    return (
        f"postgres://{settings['USER']}:{settings['PASSWORD']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    )


def point_celery_at(broker_url: str) -> str:
    """Make this process's Celery app publish to `broker_url`; returns the URL it published to before.

    Always drops the pooled connections, also when the URL is unchanged: they may point at a Redis
    that was stopped and started again, or belong to a previous test's broker. Switching back and
    forth (A → B → A) therefore always publishes where the last call said.
    """
    from portal.celery import app

    previous = app.conf.broker_url
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    os.environ["CELERY_BROKER_URL"] = broker_url
    app.conf.broker_url = broker_url
    pool, app._pool = app._pool, None
    if pool is not None:
        pool.force_close_all()
    app.amqp._producer_pool = None
    # Publishing uses kombu's process-wide pools, keyed by broker URL; closing one without removing
    # it would leave "Acquire on closed pool" for the next publisher to that URL. reset() closes
    # and forgets them all, so the next publish connects afresh.
    kombu.pools.reset()
    return previous


@contextmanager
def celery_publisher(broker_url: str):
    """Publish to `broker_url` inside the block, and to the previous broker again after it."""
    previous = point_celery_at(broker_url)
    try:
        yield broker_url
    finally:
        point_celery_at(previous)


class RedisServer:
    """A Redis that a test can stop and start again on the same port (broker outages)."""

    def __init__(self, port: int | None = None):
        self.binary = require("redis-server", "redis-server")
        self.port = port or free_port()
        self.workdir = tempfile.mkdtemp(prefix="portal-redis-")
        self.proc: Process | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        self.proc = Process("redis", redis_server_command(binary=self.binary, port=self.port, directory=self.workdir))
        self.proc.wait_for_line("Ready to accept connections", timeout=15)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def gunicorn_server(*, env: dict[str, str], workers: int = 1):
    """The portal's WSGI app under gunicorn on a free loopback port; yields its base URL."""
    port = free_port()
    proc = Process(
        "gunicorn",
        [
            str(BIN / "gunicorn"),
            "portal.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "120",
        ],
        env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_for_line("Booting worker", timeout=60)

        def answers():
            try:
                return requests.get(f"{url}/login/", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_until(answers, timeout=60, message=f"gunicorn on {url}:\n{proc.output()}")
        yield url
    finally:
        proc.stop()


def wait_until(predicate, timeout: float = 30, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
