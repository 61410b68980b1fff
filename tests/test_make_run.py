"""`make run` supervises its processes and stops them all (issue 13, findings 1, 6 and 7).

As found: a worker that exited made `make run` stop the whole portal, web included; a second
SIGTERM to its process group during shutdown left the workers, gunicorn and beat running as
orphans holding their ports; pointed at Hubject QA it still created the demo users with their
published passwords. Each test starts scripts/run.py as `make run` does, in a process group of
its own (as a terminal would), with its own run directory, database, Redis port and free ports.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest
import requests

from tests import servers

RUN_PY = servers.ROOT / "scripts" / "run.py"


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, command line) of every live process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), cmdline)
    return table


def _descendants(pid: int) -> dict[int, tuple[int, int, str]]:
    table = _processes()
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child, info in table.items():
            if info[0] == parent and child not in found:
                found[child] = info
                todo.append(child)
    return found


def _pid_of(tree: dict[int, tuple[int, int, str]], *words: str) -> int:
    matches = [pid for pid, (_, _, cmd) in tree.items() if all(word in cmd for word in words)]
    assert len(matches) == 1, f"{words}: {matches} in {tree}"
    return matches[0]


class MakeRun:
    def __init__(self, tmp_path: Path, **env: str):
        self.dir = tmp_path / "run"
        self.port, self.sim_port, self.redis_port = servers.free_port(), servers.free_port(), servers.free_port()
        child_env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DJANGO_SETTINGS_MODULE", "PORTAL_TEST_CHILD", "DATABASE_URL", "CACHE_URL"}
        }
        child_env.update(
            {
                "PORTAL_ENV_FILE": "/nonexistent/.env",  # a developer's .env must not change the test
                "PORTAL_RUN_DIR": str(self.dir),
                "PORT": str(self.port),
                "SIMULATOR_PORT": str(self.sim_port),
                "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",  # make run starts its own Redis
                "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
                "CELERY_WORKER_CONCURRENCY": "4",
                "OICP_BASE_URL": "",
                **env,
            }
        )
        self.database = tmp_path / "portal.sqlite3"
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: dict[int, tuple[int, int, str]] = {}
        self.proc = servers.Process("make run", [str(servers.BIN / "python"), str(RUN_PY)], child_env)

    def wait_until_running(self) -> None:
        self.proc.wait_for_line("The portal is running", timeout=120)
        self.remember()

    def remember(self) -> dict[int, tuple[int, int, str]]:
        tree = _descendants(self.proc.proc.pid)
        self.seen.update(tree)
        return tree

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=5)

    def healthy(self) -> bool:
        try:
            return self.get("/healthz").status_code == 200
        except requests.RequestException:
            return False

    def signal_group(self, sig: int) -> None:
        os.killpg(self.proc.proc.pid, sig)

    def left_behind(self) -> dict[int, tuple[int, int, str]]:
        """Processes of this run still alive: ones seen before (same command line, so a reused pid
        does not count) or members of their process groups."""
        groups = {pgid for _, pgid, _ in self.seen.values()} | {self.proc.proc.pid}
        commands = {cmd for _, _, cmd in self.seen.values()} | {" ".join(self.proc.proc.args)}
        return {
            pid: info
            for pid, info in _processes().items()
            if (pid in self.seen or info[1] in groups) and info[2] in commands
        }

    def cleanup(self) -> None:
        """Whatever happened in the test, leave nothing running."""
        self.proc.stop(signal.SIGTERM, timeout=30)
        for pid, (_, pgid, _) in self.left_behind().items():
            for kill, target in ((os.killpg, pgid), (os.kill, pid)):
                try:
                    kill(target, signal.SIGKILL)
                except OSError:
                    pass


@pytest.fixture
def make_run(tmp_path):
    servers.require("redis-server", "redis-server")
    runs: list[MakeRun] = []

    def start(**env: str) -> MakeRun:
        run = MakeRun(tmp_path, **env)
        runs.append(run)
        run.wait_until_running()
        return run

    yield start
    for run in runs:
        run.cleanup()


@pytest.mark.integration
@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_portal_keeps_answering(make_run):
    run = make_run()
    servers.wait_until(run.healthy, timeout=60, message=f"/healthz 200:\n{run.proc.output()}")
    tree = run.remember()
    worker = _pid_of(tree, "celery", "worker", "-Q celery")
    others = {pid for pid, (parent, _, _) in tree.items() if parent == run.proc.proc.pid and pid != worker}

    os.killpg(worker, signal.SIGKILL)  # as the OOM killer would; no chance to clean up

    run.proc.wait_for_line("worker exited with signal SIGKILL; restarting it in 1 s", timeout=10)
    run.proc.wait_for_line("worker restarted (pid", timeout=10)
    assert run.proc.proc.poll() is None, run.proc.output()
    tree = run.remember()
    restarted = _pid_of(tree, "celery", "worker", "-Q celery")
    assert restarted != worker
    # Nothing else was stopped or restarted, the web server least of all.
    assert others <= set(tree), run.proc.output()
    assert run.get("/login/").status_code == 200
    log = run.dir / "worker.log"
    servers.wait_until(
        lambda: log.read_text().count(" ready.") == 2,
        timeout=60,
        message=f"the new worker to be ready:\n{log.read_text()[-3000:]}",
    )
    servers.wait_until(run.healthy, timeout=30, message="/healthz 200 after the restart")


@pytest.mark.integration
@pytest.mark.slow
def test_two_sigterms_during_shutdown_stop_every_process_and_free_every_port(make_run):
    run = make_run()
    tree = run.remember()
    names = " | ".join(cmd for _, _, cmd in tree.values())
    for expected in (
        "redis-server",
        "-Q celery",
        "-Q stop-retries",
        "-Q inbound",
        "gunicorn",
        "beat",
        "sessions.oicp.simulator",
    ):
        assert expected in names, names

    run.signal_group(signal.SIGTERM)
    time.sleep(0.1)  # the second one arrives while the first is stopping everything
    run.signal_group(signal.SIGTERM)
    run.proc.proc.wait(timeout=40)

    assert "stopped." in run.proc.output()
    assert run.left_behind() == {}, run.proc.output()
    for port in (run.port, run.sim_port, run.redis_port):
        assert _nothing_listens(port), port


def _nothing_listens(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.integration
@pytest.mark.slow
def test_against_hubject_qa_no_demo_user_is_created_and_one_ctrl_c_stops_everything(make_run):
    run = make_run(OICP_BASE_URL="https://service-qa.hubject.com", OICP_PROVIDER_ID="DE-ABC", DJANGO_DEBUG="true")
    output = run.proc.output()
    assert "Talking to Hubject at https://service-qa.hubject.com" in output
    assert "manage.py createsuperuser" in output
    assert "-demo-pass" not in output and "Demo users" not in output
    with sqlite3.connect(run.database) as db:
        assert db.execute("select count(*) from auth_user").fetchone() == (0,)
    assert not any("sessions.oicp.simulator" in cmd for _, _, cmd in run.remember().values())

    run.signal_group(signal.SIGINT)  # what Ctrl-C in the terminal sends
    run.proc.proc.wait(timeout=40)
    assert run.left_behind() == {}, run.proc.output()


@pytest.mark.django_db
def test_load_demo_refuses_outside_the_sandbox_and_creates_no_user(settings):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.core.management.base import CommandError

    settings.PORTAL_ENVIRONMENT = "QA"
    with pytest.raises(CommandError, match="only runs in the sandbox"):
        call_command("load_demo", "--sessions", "0")
    assert not get_user_model().objects.exists()
