"""What ingest, pages, export and verify share: the portal's environment, Debian packages, a throwaway
PostgreSQL, the generated data sets, and timing of child processes (wall time and peak memory).

Each benchmark runs alone (`python -m bench.pages`) or under `bench/run.py`, which starts one
PostgreSQL and generates the data once per database, and hands both down in the environment
(BENCH_PG_URL, BENCH_DATASETS) so that no benchmark generates them again.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.common import ROOT, servers

PYTHON = sys.executable
# BENCH_SCALE=0.05 shrinks every data set (and its 1/100 twin) for a quick run.
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
FULL = {"sessions": 100_000, "stops": 300_000, "audit": 1_000_000}
SMALL_DIVISOR = 100
DATABASES = [kind for kind in os.environ.get("BENCH_DATABASES", "sqlite,postgres").split(",") if kind]
# BENCH_INBOUND_NICENESS: the inbound workers' niceness in ingest and sustained (default: as deployed,
# portal/processes.py), to compare with 0.
NICENESS = {"niceness": int(os.environ["BENCH_INBOUND_NICENESS"])} if os.environ.get("BENCH_INBOUND_NICENESS") else {}


def log(message: str) -> None:
    print(f"[bench] … {message}", flush=True)


# --- packages ------------------------------------------------------------------------------------


def ensure_debian(binary: str, package: str) -> str:
    """The path of `binary`, installing Debian's `package` first when it is missing (as root)."""
    found = shutil.which(binary) or (glob.glob(binary) and sorted(glob.glob(binary))[-1])
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit(f"{binary} is missing: apt-get install -y --no-install-recommends {package} (as root)")
    log(f"installing Debian package {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    found = shutil.which(binary) or (glob.glob(binary) and sorted(glob.glob(binary))[-1])
    if not found:
        raise SystemExit(f"{package} installed but {binary} is still missing")
    return found


# --- the portal's environment --------------------------------------------------------------------


def portal_env(database_url: str, **extra: str) -> dict[str, str]:
    """Production settings (DEBUG off) on `database_url`, with nothing reaching the demo's Redis."""
    env = dict(os.environ)
    for name in ("BENCH_ROWS_FILE",):
        env.pop(name, None)
    env.update(
        {
            "PORTAL_ENV_FILE": "/nonexistent/.env",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "bench-" + uuid.uuid4().hex,
            "AUDIT_CHAIN_KEY": "bench-audit-chain-key-for-this-run-only",
            # Datasets are regenerated under the same names: anchors of an earlier run's chain would
            # read as a wiped table.
            "AUDIT_ANCHOR_DIR": tempfile.mkdtemp(prefix="bench-anchors-"),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "DJANGO_SECURE_COOKIES": "false",
            "OICP_BASE_URL": "http://127.0.0.1:9",  # the loopback sandbox: no certificate needed, never called
            "OICP_PROVIDER_ID": "DE-EMP",
            "DATABASE_URL": database_url,
            "CACHE_URL": "locmemcache://",
            "CELERY_BROKER_URL": "redis://127.0.0.1:9/0",  # nothing here publishes; never the demo's Redis
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([PYTHON, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, text=True, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args[:2])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done


@dataclass
class Measured:
    seconds: float
    max_rss_kb: int
    returncode: int
    stdout: str
    stderr: str


def measure_process(args: list[str], env: dict[str, str] | None = None, stdout_path: Path | None = None) -> Measured:
    """Run a child to its end: wall time and its own peak resident memory (ru_maxrss, os.wait4)."""
    out = open(stdout_path, "wb") if stdout_path else subprocess.PIPE
    started = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    stdout = b"" if stdout_path else proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if stdout_path:
        out.close()
    return Measured(
        seconds, usage.ru_maxrss, proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")
    )


# --- PostgreSQL ----------------------------------------------------------------------------------


@contextmanager
def postgres_server():
    """A throwaway PostgreSQL on a free loopback port (RECIPES.md); yields postgres://postgres@host:port.

    BENCH_PG_URL reuses one that is already running (bench/run.py starts one for every benchmark).
    """
    if os.environ.get("BENCH_PG_URL"):
        yield os.environ["BENCH_PG_URL"]
        return
    initdb = ensure_debian("/usr/lib/postgresql/*/bin/initdb", "postgresql")
    pgbin = Path(initdb).parent
    workdir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    workdir.chmod(0o755)
    data = workdir / "pgdata"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    data.chmod(0o700)
    port = servers.free_port()

    def as_postgres(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, stdout=subprocess.DEVNULL)

    as_postgres(str(pgbin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
    # fsync off as in the test run (a throwaway server); shared_buffers a little above the default
    # 128 MB so the 1M-row audit table's indexes stay cached, as on any production server.
    as_postgres(
        str(pgbin / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(data / "server.log"),
        "-w",
        "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c shared_buffers=512MB "
        "-c max_connections=100",
        "start",
    )
    try:
        yield f"postgres://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(pgbin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(workdir, ignore_errors=True)


def psql(pg_url: str, *args: str, database: str = "postgres", capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", f"{pg_url}/{database}", *args],
        check=True,
        text=True,
        capture_output=capture,
    )


def create_pg_database(pg_url: str, name: str) -> str:
    psql(pg_url, "-c", f'DROP DATABASE IF EXISTS "{name}"')
    psql(pg_url, "-c", f'CREATE DATABASE "{name}"')
    return f"{pg_url}/{name}"


def drop_pg_database(pg_url: str, name: str) -> None:
    """Drop a benchmark's database once it is done, and write what it left out of the server's
    memory: `make bench` runs every benchmark on one server, and autovacuum working through the
    ingest benchmark's ~200,000 updated rows took the CPU from the sustained-load run after it."""
    psql(pg_url, "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(pg_url, "-c", "CHECKPOINT")


# --- data sets -----------------------------------------------------------------------------------


@dataclass
class Dataset:
    kind: str  # sqlite | postgres
    size: str  # full | small
    url: str
    sessions: int
    stops: int
    audit: int
    seconds: float  # generate_load_data's wall time

    @property
    def sqlite_path(self) -> str:
        return sqlite_file(self.url)

    @property
    def label(self) -> str:
        return "SQLite" if self.kind == "sqlite" else "PostgreSQL"


def counts(size: str) -> dict[str, int]:
    divisor = SMALL_DIVISOR if size == "small" else 1
    return {name: max(10, int(value * SCALE) // divisor) for name, value in FULL.items()}


def new_database(kind: str, name: str, workdir: Path, pg_url: str | None) -> str:
    if kind == "sqlite":
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / f"{name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    assert pg_url, "PostgreSQL needs a server"
    return create_pg_database(pg_url, name)


def generate(kind: str, size: str, workdir: Path, pg_url: str | None) -> Dataset:
    """A fresh database, migrated, with bench.generate_load_data's sessions, stops and chained audit records."""
    url = new_database(kind, f"bench_{size}", workdir, pg_url)
    env = portal_env(url)
    manage(env, "migrate", "--verbosity", "0")
    numbers = counts(size)
    log(
        f"generating {numbers['sessions']:,} sessions, {numbers['stops']:,} stops, {numbers['audit']:,} audit "
        f"records on {kind} ({size})"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [
            PYTHON,
            "-m",
            "bench.generate_load_data",
            "--sessions",
            str(numbers["sessions"]),
            "--stops",
            str(numbers["stops"]),
            "--audit",
            str(numbers["audit"]),
        ],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.generate_load_data failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    seconds = time.perf_counter() - started
    if kind == "postgres":
        # What autovacuum does on its own shortly after a bulk load (planner statistics, visibility map).
        psql(pg_url, "-c", "VACUUM ANALYZE", database=f"bench_{size}")
    log(f"generated {kind} ({size}) in {seconds:.0f} s")
    return Dataset(kind, size, url, numbers["sessions"], numbers["stops"], numbers["audit"], seconds)


def datasets(workdir: Path, pg_url: str | None, kinds: list[str] | None = None) -> dict[tuple[str, str], Dataset]:
    """Full and 1/100 data sets per database: from BENCH_DATASETS when run.py made them, else made here."""
    given = os.environ.get("BENCH_DATASETS")
    if given:
        return {(d["kind"], d["size"]): Dataset(**d) for d in json.loads(given)}
    result = {}
    for kind in kinds or DATABASES:
        if kind == "postgres" and not pg_url:
            continue
        for size in ("full", "small"):
            result[(kind, size)] = generate(kind, size, workdir, pg_url)
    return result


def run_on_datasets(run) -> None:
    """Call run(data sets) for the databases of BENCH_DATABASES, starting a throwaway PostgreSQL if needed."""
    base = workdir("data")
    if "postgres" in DATABASES:
        with postgres_server() as pg_url:
            run(datasets(base, pg_url))
    else:
        run(datasets(base, None))


def datasets_json(sets: dict[tuple[str, str], Dataset]) -> str:
    return json.dumps([asdict(d) for d in sets.values()])


def sqlite_file(url: str) -> str:
    """sqlite:////tmp/x.sqlite3 → /tmp/x.sqlite3"""
    return url.removeprefix("sqlite://")


def rss_mb(kb: int) -> float:
    return kb / 1024


def workdir(prefix: str) -> Path:
    base = os.environ.get("BENCH_WORKDIR")
    if base:
        path = Path(base) / prefix
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))


__all__ = ["Dataset", "datasets", "ensure_debian", "log", "measure_process", "portal_env", "postgres_server"]


# --- wrk -------------------------------------------------------------------------------------------


def run_wrk(args: list[str]) -> dict:
    """Run wrk (its script dofile's bench/wrk_common.lua, from the project root) and read its summary:
    requests, duration, p50/p99 in µs, plus the rate reached ("rps") and all failed requests ("errors")."""
    out = subprocess.run(["wrk", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    match = re.search(r"^WRKJSON (\{.*\})$", out.stdout, re.M)
    if not match:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(
        result[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return result


def run_per_database(module: str) -> None:
    """`python -m MODULE KIND DATABASE_URL` for each of BENCH_DATABASES, each on a fresh database and
    in a process of its own (Django is set up once per process, on one database)."""
    name = module.rsplit(".", 1)[-1]
    base = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    with postgres_server() if "postgres" in DATABASES else nullcontext() as pg_url:
        for kind in DATABASES:
            url = new_database(kind, f"bench_{name}", base, pg_url)
            subprocess.run([PYTHON, "-m", module, kind, url], cwd=ROOT, check=False)
            if kind == "postgres":
                drop_pg_database(pg_url, f"bench_{name}")
