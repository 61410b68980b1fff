"""`make run`: the whole portal on one machine, supervised, stopped together with Ctrl-C.

Sandbox (no OICP_BASE_URL given): Redis, the Hubject simulator (whose simulated CPOs push
notifications and CDRs to the portal), a Celery worker, a retry worker, Celery beat and the web
server, with demo users and sessions. Trial against a real Hubject system (OICP_BASE_URL set in
the environment or .env): the same without the simulator, the demo sessions and the demo users
(their passwords are published); it prints how to create the first administrator instead. A value
given in the environment or .env is never overridden; we only fill in what is missing.

Supervision: a process that exits is started again after 1, 2, 4 … 30 s (the delay starts over
once it has run for a minute), with a line naming it and its exit status; the rest keeps running.
Ctrl-C, or SIGTERM/SIGHUP once or any number of times, stops everything: each process group gets
SIGTERM, whatever is left after STOP_GRACE_SECONDS gets SIGKILL, Redis last (so workers can still
acknowledge on their way out). Children also get SIGTERM if this script itself is killed.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import environ

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the project's own modules are importable
from portal.processes import celery_worker_command, inbound_worker_command, redis_server_command  # noqa: E402

VAR = Path(os.environ.get("PORTAL_RUN_DIR") or ROOT / "var")  # logs, demo-sessions.json, beat schedule
PY = str(ROOT / ".venv" / "bin" / "python")
BIN = ROOT / ".venv" / "bin"

STOP_GRACE_SECONDS = 15  # a worker's warm shutdown waits for calls in flight; gunicorn's is 10 s
BACKOFF_MAX_SECONDS = 30
STABLE_AFTER_SECONDS = 60  # a process that ran this long starts over at a 1 s delay when it exits


class Stopping(Exception):
    """A stop signal arrived while starting up."""


def port_open(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.3)
        return probe.connect_ex((host, port)) == 0


def exit_status(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded here: after fork only the call is safe
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when this script dies, even by SIGKILL (Linux)."""
    if _prctl is not None:
        _prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def say(text: str) -> None:
    """Print, but never fail: with the terminal gone (SIGHUP, make killed) stopping must go on."""
    try:
        print(text, flush=True)
    except OSError:
        pass


def kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Child:
    def __init__(self, name: str, args: list[str], env: dict[str, str]):
        self.name, self.args, self.env = name, args, env
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.failures = 0  # exits in a row, each after less than STABLE_AFTER_SECONDS
        self.restart_at: float | None = None


class Supervisor:
    """Starts child processes (each in its own process group), restarts those that exit, stops all."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.signals = 0

    @property
    def stopping(self) -> bool:
        return self.signals > 0

    def on_signal(self, signum, frame) -> None:
        # Only count: raising here could interrupt the shutdown itself half-way (and leave orphans).
        self.signals += 1

    def check(self) -> None:
        if self.stopping:
            raise Stopping

    def _spawn(self, child: Child) -> None:
        out = open(VAR / f"{child.name}.log", "ab")  # noqa: SIM115 - closed below, the child has its copy
        try:
            child.proc = subprocess.Popen(
                child.args,
                cwd=ROOT,
                env=child.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            out.close()
        child.started_at = time.monotonic()
        child.restart_at = None

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        child = Child(name, args, env)
        self.children.append(child)
        self._spawn(child)
        return child

    def run_step(self, env: dict[str, str], *args: str, required: bool = True) -> None:
        """One `manage.py` command in the foreground; stops it when we are told to stop.

        A step that is not `required` only warns when it fails (the portal runs without it)."""
        proc = subprocess.Popen(
            [PY, "manage.py", *args], cwd=ROOT, env=env, start_new_session=True, preexec_fn=_die_with_parent
        )
        try:
            while proc.poll() is None:
                self.check()
                time.sleep(0.1)
        except Stopping:
            kill_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
            raise
        if proc.returncode != 0:
            if not required:
                say(f"manage.py {' '.join(args)} failed with {exit_status(proc.returncode)}; going on without it")
                return
            sys.exit(f"manage.py {' '.join(args)} failed with {exit_status(proc.returncode)}")

    def wait_for(self, host: str, port: int, what: str, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while not port_open(host, port):
            self.check()
            if time.monotonic() > deadline:
                sys.exit(f"{what} did not start on {host}:{port}; see {VAR}/*.log")
            time.sleep(0.1)

    def watch(self) -> None:
        """Until a stop signal: restart every child that exits, with backoff."""
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                if child.proc is None:
                    if child.restart_at is not None and now >= child.restart_at:
                        self._spawn(child)
                        say(f"{child.name} restarted (pid {child.proc.pid})")
                    continue
                code = child.proc.poll()
                if code is None:
                    continue
                # Whatever is left of its process group (a dead gunicorn master's workers, say)
                # would keep the port or the work; the new process starts clean.
                kill_group(child.proc.pid, signal.SIGKILL)
                if now - child.started_at >= STABLE_AFTER_SECONDS:
                    child.failures = 0
                delay = min(BACKOFF_MAX_SECONDS, 2**child.failures)
                child.failures += 1
                say(
                    f"{child.name} exited with {exit_status(code)}; restarting it in {delay} s "
                    f"(see {VAR}/{child.name}.log)"
                )
                child.proc, child.restart_at = None, now + delay
            time.sleep(0.2)

    def stop_all(self) -> None:
        """Stop every child's process group: SIGTERM, then SIGKILL after the grace period.

        Signals that arrive meanwhile only add to the count, so a second Ctrl-C or SIGTERM cannot
        cut this short and leave processes behind.
        """
        running = [c for c in self.children if c.proc is not None]
        last = [c for c in running if c.name == "redis"]
        for group, grace in (([c for c in running if c not in last], STOP_GRACE_SECONDS), (last, 5)):
            for child in reversed(group):
                if child.proc.poll() is None:
                    say(f"stopping {child.name}…")
                kill_group(child.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            seen = self.signals
            while time.monotonic() < deadline and any(c.proc.poll() is None for c in group):
                if self.signals != seen:
                    seen = self.signals
                    say(f"still stopping; anything left is killed in {deadline - time.monotonic():.0f} s")
                time.sleep(0.1)
            for child in group:
                if child.proc.poll() is None:
                    say(f"{child.name} did not stop within {grace} s: killed")
                kill_group(child.proc.pid, signal.SIGKILL)  # the leader and anything left in its group
                try:
                    child.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass


def main() -> None:
    VAR.mkdir(parents=True, exist_ok=True)
    # The process environment wins; PORTAL_ENV_FILE points elsewhere, as in portal/settings.py.
    environ.Env.read_env(os.environ.get("PORTAL_ENV_FILE") or ROOT / ".env", overwrite=False)
    env = dict(os.environ)
    sandbox = not env.get("OICP_BASE_URL")
    port = int(env.get("PORT", "8000"))
    sim_port = int(env.get("SIMULATOR_PORT", "8090"))
    env.setdefault("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
    if sandbox:
        env["OICP_BASE_URL"] = f"http://127.0.0.1:{sim_port}"
        env.setdefault("OICP_PROVIDER_ID", "DE-EMP")
        env.setdefault("DJANGO_DEBUG", "true")
        # Training pace: an accepted stop that the CPO never confirms shows up on the stuck queue
        # after 2 minutes instead of 10.
        env.setdefault("STOP_CONFIRMATION_MINUTES", "2")
    env.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'db.sqlite3'}")

    sup = Supervisor()
    # Ctrl-C, SIGTERM and a closed terminal all stop everything (a shell may start us with SIGINT ignored).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, sup.on_signal)
    try:
        broker = env.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
        env["CELERY_BROKER_URL"] = broker
        parts = urlsplit(broker)
        host, rport = parts.hostname or "127.0.0.1", parts.port or 6379
        if not port_open(host, rport):
            if host not in {"127.0.0.1", "localhost"}:
                sys.exit(f"The broker at {host}:{rport} (CELERY_BROKER_URL) does not answer.")
            if not shutil.which("redis-server"):
                sys.exit("redis-server is not installed: run `make run` as root, or apt-get install redis-server.")
            sup.start("redis", redis_server_command(port=rport, directory=str(VAR)), env)
            sup.wait_for(host, rport, "Redis")
            print(f"Redis started on {host}:{rport}", flush=True)

        sup.run_step(env, "migrate", "--noinput", "-v", "0")
        if sandbox:
            sup.run_step(env, "load_demo")
            # The simulated CPOs run the sessions the portal shows (Progress, then End and CDR after a stop).
            sup.run_step(env, "export_sim_sessions", str(VAR / "demo-sessions.json"))
        sup.run_step(env, "collectstatic", "--noinput", "-v", "0")

        if sandbox:
            if port_open("127.0.0.1", sim_port):
                sys.exit(f"Port {sim_port} is taken; set SIMULATOR_PORT to a free one.")
        else:
            print(f"Talking to Hubject at {env['OICP_BASE_URL']}", flush=True)
            # Demo users have published passwords: never outside the sandbox.
            print(
                "No demo users outside the sandbox. To create the first administrator (once):\n"
                "  .venv/bin/python manage.py createsuperuser\n"
                "then sign in and add the others on the Team page (/team/) or in /admin/.",
                flush=True,
            )

        # The pool and its options: portal/processes.py. Retries and stops deferred by the
        # per-CPO limit wait on their own queue and worker, so their countdown messages never sit in
        # front of fresh stops; pushed messages are applied by a third, at a lower CPU priority.
        concurrency = int(env.get("CELERY_WORKER_CONCURRENCY", "40"))
        sup.start("worker", celery_worker_command(queues="celery", concurrency=concurrency), env)
        retry_queue = env.get("STOP_RETRY_QUEUE", "stop-retries")
        sup.start("retry-worker", celery_worker_command(queues=retry_queue, concurrency=20, name="retries"), env)
        sup.start("inbound-worker", inbound_worker_command(queue=env.get("OICP_INBOUND_QUEUE", "inbound")), env)
        if port_open("127.0.0.1", port):
            sys.exit(f"Port {port} is taken; set PORT to a free one.")
        # gthread workers, threads and timeouts: portal/gunicorn_conf.py (WEB_CONCURRENCY, WEB_THREADS).
        sup.start(
            "web",
            [
                str(BIN / "gunicorn"),
                "portal.wsgi",
                "--config",
                "python:portal.gunicorn_conf",
                "--bind",
                f"127.0.0.1:{port}",
                "--access-logfile",
                "-",
            ],
            env,
        )
        sup.wait_for("127.0.0.1", port, "The web server")
        # Periodic jobs: unconfirmed stops, the stop sweeper, the CDR pull (CELERY_BEAT_SCHEDULE).
        sup.start(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "portal",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(VAR / "celerybeat-schedule"),
            ],
            env,
        )
        if sandbox:
            # Started after the web server: the simulated CPOs push to the portal's inbound endpoints
            # (Start and Progress, and End then the CDR after an accepted stop; a new session every 3 min).
            sup.start(
                "simulator",
                [
                    PY,
                    "-m",
                    "sessions.oicp.simulator",
                    "--port",
                    str(sim_port),
                    "--demo",
                    "--portal-url",
                    f"http://127.0.0.1:{port}",
                    "--provider-id",
                    env["OICP_PROVIDER_ID"],
                    "--demo-sessions-file",
                    str(VAR / "demo-sessions.json"),
                    "--progress-interval",
                    "60",
                    "--push-delay",
                    "3",
                    "--new-session-interval",
                    "180",
                ],
                env,
            )
            sup.wait_for("127.0.0.1", sim_port, "The Hubject simulator")
            print(f"Hubject simulator (SANDBOX) on http://127.0.0.1:{sim_port}", flush=True)
            # The simulator's EVSE directory (400 EVSEs: about a second), so the agent sees stations;
            # the web server is already up. Beat pulls the changes from then on.
            sup.run_step(env, "pull_evse_data", "--full", required=False)
        print(
            f"\nThe portal is running: http://127.0.0.1:{port}/   (logs in {VAR}/, Ctrl-C stops everything)", flush=True
        )
        sup.watch()
    except Stopping:
        pass
    finally:
        sup.stop_all()
        say("stopped.")


if __name__ == "__main__":
    main()
