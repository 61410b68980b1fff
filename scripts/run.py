"""`make run`: the whole portal on one machine, stopped together with Ctrl-C.

Sandbox (no OICP_BASE_URL given): Redis, the Hubject simulator (whose simulated CPOs push
notifications and CDRs to the portal), a Celery worker, Celery beat and the web server, with demo
users and sessions. Trial against a real Hubject system (OICP_BASE_URL set in
the environment or .env): the same without the simulator and the demo sessions. A value given in
the environment or .env is never overridden; we only fill in what is missing.
"""

from __future__ import annotations

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
VAR = Path(os.environ.get("PORTAL_RUN_DIR") or ROOT / "var")  # logs, demo-sessions.json, beat schedule
PY = str(ROOT / ".venv" / "bin" / "python")
BIN = ROOT / ".venv" / "bin"


def port_open(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.3)
        return probe.connect_ex((host, port)) == 0


def wait_for(host: str, port: int, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not port_open(host, port):
        if time.monotonic() > deadline:
            sys.exit(f"{what} did not start on {host}:{port}; see {VAR}/*.log")
        time.sleep(0.1)


class Supervisor:
    """Starts child processes and stops them all, newest first."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str], log: bool = True) -> subprocess.Popen:
        out = open(VAR / f"{name}.log", "ab") if log else None  # noqa: SIM115 - kept open for the child
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT if log else None,
                                start_new_session=True)
        self.children.append((name, proc))
        return proc

    def stop_all(self) -> None:
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                print(f"stopping {name}…", flush=True)
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in reversed(self.children):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True)


def main() -> None:
    VAR.mkdir(exist_ok=True)
    environ.Env.read_env(ROOT / ".env", overwrite=False)  # the process environment wins
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
    # Ctrl-C and SIGTERM both stop everything (a shell may start us with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
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
            sup.start("redis", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(VAR)], env)
            wait_for(host, rport, "Redis")
            print(f"Redis started on {host}:{rport}", flush=True)

        manage(env, "migrate", "--noinput", "-v", "0")
        if sandbox:
            manage(env, "load_demo")
            # The simulated CPOs run the sessions the portal shows (Progress, then End and CDR after a stop).
            manage(env, "export_sim_sessions", str(VAR / "demo-sessions.json"))
        else:
            manage(env, "load_demo", "--sessions", "0")
        manage(env, "collectstatic", "--noinput", "-v", "0")

        if sandbox:
            if port_open("127.0.0.1", sim_port):
                sys.exit(f"Port {sim_port} is taken; set SIMULATOR_PORT to a free one.")
        else:
            print(f"Talking to Hubject at {env['OICP_BASE_URL']}", flush=True)

        # Threads: a stop spends its time waiting on Hubject, so many cheap slots; the per-CPO
        # limit in the service keeps one slow CPO from taking them all.
        sup.start("worker", [str(BIN / "celery"), "-A", "portal", "worker", "--pool", "threads", "-Q", "celery",
                             "--concurrency", env.get("CELERY_WORKER_CONCURRENCY", "40"), "--loglevel", "INFO"], env)
        # Retries and stops deferred by the per-CPO limit wait on their own queue and worker, so
        # their countdown messages never sit in front of fresh stops.
        sup.start("retry-worker", [str(BIN / "celery"), "-A", "portal", "worker", "--pool", "threads",
                                   "-Q", env.get("STOP_RETRY_QUEUE", "stop-retries"), "-n", "retries@%h",
                                   "--concurrency", "20", "--loglevel", "INFO"], env)
        if port_open("127.0.0.1", port):
            sys.exit(f"Port {port} is taken; set PORT to a free one.")
        sup.start("web", [str(BIN / "gunicorn"), "portal.wsgi", "--bind", f"127.0.0.1:{port}",
                                "--workers", env.get("WEB_CONCURRENCY", "2"), "--access-logfile", "-"], env)
        wait_for("127.0.0.1", port, "The web server")
        # Periodic jobs: unconfirmed stops, the stop sweeper, the CDR pull (CELERY_BEAT_SCHEDULE).
        sup.start("beat", [str(BIN / "celery"), "-A", "portal", "beat", "--loglevel", "INFO",
                           "--schedule", str(VAR / "celerybeat-schedule")], env)
        if sandbox:
            # Started after the web server: the simulated CPOs push to the portal's inbound endpoints
            # (Start and Progress, and End then the CDR after an accepted stop; a new session every 3 min).
            sup.start("simulator", [PY, "-m", "sessions.oicp.simulator", "--port", str(sim_port), "--demo",
                                    "--portal-url", f"http://127.0.0.1:{port}", "--provider-id", env["OICP_PROVIDER_ID"],
                                    "--demo-sessions-file", str(VAR / "demo-sessions.json"),
                                    "--progress-interval", "60", "--push-delay", "3",
                                    "--new-session-interval", "180"], env)
            wait_for("127.0.0.1", sim_port, "The Hubject simulator")
            print(f"Hubject simulator (SANDBOX) on http://127.0.0.1:{sim_port}", flush=True)
        print(f"\nThe portal is running: http://127.0.0.1:{port}/   (logs in {VAR}/, Ctrl-C stops everything)",
              flush=True)
        while True:
            for name, proc in sup.children:
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; see {VAR}/{name}.log", flush=True)
                    raise KeyboardInterrupt
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        sup.stop_all()
        print("stopped.", flush=True)


if __name__ == "__main__":
    main()
