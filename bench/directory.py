"""Hubject's EVSE directory at Hubject's scale (issue 15 item 6), on SQLite and on PostgreSQL:

1. full pull: `pull_evse_data --full` (the service, in a process of its own) of 500,000 EVSEs from
   the simulator into a fresh migrated database: wall time and peak memory growth (VmHWM − VmRSS
   before the pull); baseline: downloading the same pages (same page size) and json.loads of each,
   nothing stored, in the same run;
2. delta: the simulator asked to change 5,000 EVSEs (POST /_sim/directory/churn; a tenth of the
   network below 50,000), then `pull_evse_data` (a delta since LastCall); baseline: downloading and
   parsing the same delta pages;
3. place search: the session list's search box with 30 queries taken from the pulled data, each a
   station's street with one letter missing plus its city ("Hoogstrat Utrecht"), p95 through
   django.test.Client; baseline: 30 indexed lookups (EvseRecord by evse_key) in the same process;
4. the CPO page (charging_sessions:operator-detail) on the data set of bench/pages.py (300,000 stop
   requests, 50 CPOs), as bench/pages.py times pages, with its query count at 1/100 of the size.

The EVSE count is 500,000 × BENCH_SCALE. The simulator runs in a process of its own
(`--simulator`): the network of `python -m sessions.oicp.simulator --evse-count N`, with the
directory's epoch set from the command line (the run sits in the middle of a long churn tick, so
nothing changes by itself: the delta is exactly the EVSEs the benchmark churned).

    python -m bench.directory                           everything (BENCH_DATABASES, BENCH_SCALE)
    python -m bench.directory --simulator PORT N EPOCH  the simulator (used by the above)
    python -m bench.directory --worker WHAT             one measurement, JSON (used by the above)
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from bench.common import ROOT, percentile, report, servers
from bench.support import (
    DATABASES,
    PYTHON,
    SCALE,
    Dataset,
    datasets,
    log,
    manage,
    new_database,
    portal_env,
    postgres_server,
    psql,
    workdir,
)

FULL_EVSES = 500_000
EVSE_COUNT = max(1_000, int(FULL_EVSES * SCALE))
# Seconds per change of the simulated network. Long, so that time alone never moves it during a run:
# the delta carries only the EVSEs churned on purpose (DELTA_CHANGES).
CHURN_SECONDS = 14_400.0
FULL_TARGET_SECONDS = 180.0 * EVSE_COUNT / FULL_EVSES  # 3 minutes for 500,000, in proportion below it
MEMORY_TARGET_MB = 300.0
DELTA_TARGET_SECONDS = 10.0  # per 5,000 changed records
DELTA_PER = 5_000
DELTA_CHANGES = min(DELTA_PER, EVSE_COUNT // 10)
SEARCH_TARGET_MS = 100.0
CPO_TARGET_MS = 150.0
SEARCHES = 30
WARMUP = 3
CPO_OPERATOR = "DE*L07"  # one of generate_load_data's 50 CPOs: 1/50 of the stop requests


# --- the simulator -------------------------------------------------------------------------------


def simulator_main(port: int, evse_count: int, epoch: float) -> None:
    """The simulator's server (as its command line makes it) with its directory's epoch fixed."""
    from sessions.oicp.simulator.server import make_server, serve_until_signalled

    server = make_server("127.0.0.1", port, None, evse_count=evse_count, evse_churn_seconds=CHURN_SECONDS, seed=0)
    server.directory.epoch = epoch
    serve_until_signalled(server)


@contextmanager
def simulator(epoch: float):
    port = servers.free_port()
    args = [PYTHON, "-m", "bench.directory", "--simulator", str(port), str(EVSE_COUNT), repr(epoch)]
    proc = servers.Process("simulator", args, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        proc.wait_for_line("Hubject simulator listening", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def churn(sim_url: str, count: int) -> int:
    """Have `count` EVSEs change now (the simulator's control API): the next delta's content."""
    import requests

    answer = requests.post(f"{sim_url}/_sim/directory/churn", json={"count": count}, timeout=60)
    answer.raise_for_status()
    return answer.json()["churned"]


# --- workers (a process each, Django set up on DATABASE_URL) -------------------------------------


def _memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _fetch(last_call) -> dict:
    """The baseline: every page as the pull asks for it (same URL, body, page size), json.loads, kept nowhere."""
    import requests
    from django.conf import settings

    from sessions.oicp.paths import PULL_EVSE_DATA

    size = settings.EVSE_DATA_PULL_PAGE_SIZE
    url = settings.OICP_BASE_URL + PULL_EVSE_DATA.format(provider_id=settings.OICP_PROVIDER_ID)
    body = {"ProviderID": settings.OICP_PROVIDER_ID, "GeoCoordinatesResponseFormat": "DecimalDegree"}
    if last_call is not None:
        body["LastCall"] = last_call.isoformat(timespec="seconds")
    headers = {"Content-Type": "application/json; charset=UTF-8", "Accept": "application/json"}
    data = json.dumps(body).encode()
    pages = records = size_bytes = 0
    with requests.Session() as session:
        while True:
            response = session.post(f"{url}?page={pages}&size={size}", data=data, headers=headers, timeout=120)
            response.raise_for_status()
            parsed = json.loads(response.content.decode("utf-8-sig"))
            pages += 1
            records += len(parsed["content"])
            size_bytes += len(response.content)
            if parsed.get("last") or not parsed["content"]:
                break
    return {"pages": pages, "records": records, "bytes": size_bytes}


def _pull(full: bool) -> dict:
    from sessions import services

    result = services.pull_evse_data(full=full, trigger="command")
    return {
        "ok": result.ok,
        "summary": result.summary(),
        "pages": result.pages,
        "records": result.added + result.changed + result.unchanged + result.deleted + result.refused,
        "added": result.added,
        "changed": result.changed,
        "deleted": result.deleted,
    }


def pull_worker(what: str) -> dict:
    """fetch-full, fetch-delta (baselines), pull-full, pull-delta: seconds, memory growth, counts."""
    from django.db import connection

    from sessions.directory.pull import next_last_call

    last_call = next_last_call() if what == "fetch-delta" else None
    connection.ensure_connection()
    before = _memory_kb("VmRSS")
    started = time.perf_counter()
    result = _fetch(last_call) if what.startswith("fetch") else _pull(full=what == "pull-full")
    result["seconds"] = time.perf_counter() - started
    result["growth_mb"] = (_memory_kb("VmHWM") - before) / 1024
    return result


def _misspelt(word: str, rng: random.Random) -> str:
    """One letter of the word's middle left out: an edit distance of 1, as typed in a hurry."""
    index = rng.randrange(2, len(word) - 2)
    return word[:index] + word[index + 1 :]


def _queries(count: int, rng: random.Random) -> list[tuple[str, int]]:
    """(query, pk of the EVSE it was made from): a station's longest street word misspelt, and its city."""
    from django.db.models import Max, Min

    from sessions.models import EvseRecord

    bounds = EvseRecord.objects.aggregate(low=Min("pk"), high=Max("pk"))
    found: list[tuple[str, int]] = []
    while len(found) < count:
        record = EvseRecord.objects.filter(pk__gte=rng.randint(bounds["low"], bounds["high"])).order_by("pk").first()
        words = [word for word in re.findall(r"[^\W\d_]+", record.street) if len(word) >= 6]
        if not words or not record.city:
            continue
        street = max(words, key=len)
        found.append((f"{_misspelt(street, rng)} {record.city}", record.pk))
    return found


def search_worker() -> dict:
    """The place search through the session list (as pages.py times pages), then the baseline lookups."""
    from urllib.parse import urlencode

    from django.urls import reverse

    from bench.pages import count_queries, supervisor_client
    from sessions.directory.selectors import search_places
    from sessions.models import EvseRecord
    from sessions.oicp.ids import id_search_key

    rng = random.Random(15)
    client = supervisor_client()
    session_list = reverse("charging_sessions:session-list")
    queries = _queries(WARMUP + SEARCHES, rng)
    urls = [f"{session_list}?{urlencode({'q': query, 'status': ''})}" for query, _ in queries]
    for url in urls[:WARMUP]:
        client.get(url)
    response, statements = count_queries(client, urls[WARMUP])
    timings = []
    for url in urls[WARMUP:]:
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            break
    # Did the misspelt street find its station? (outside the timing)
    hits = 0
    for query, pk in queries[WARMUP:]:
        record = EvseRecord.objects.get(pk=pk)
        stations = search_places(query)
        hits += any(s.first.street == record.street and s.first.city == record.city for s in stations)
    # Baseline: as many indexed equality lookups, in the same process.
    keys = [id_search_key(record.evse_id) for record in EvseRecord.objects.filter(pk__in=[pk for _, pk in queries])]
    for key in keys[:WARMUP]:
        EvseRecord.objects.filter(evse_key=key).first()
    lookups = []
    for key in keys[WARMUP : WARMUP + SEARCHES]:
        started = time.perf_counter()
        EvseRecord.objects.filter(evse_key=key).first()
        lookups.append((time.perf_counter() - started) * 1000)
    return {
        "status": response.status_code,
        "queries": len(statements),
        "p50": percentile(timings, 50),
        "p95": percentile(timings, 95),
        "hits": hits,
        "searches": len(timings),
        "examples": [query for query, _ in queries[WARMUP : WARMUP + 3]],
        "lookup_p95": percentile(lookups, 95),
        "slowest_sql": sorted(statements, reverse=True)[:2],
    }


def cpo_worker() -> dict:
    """The CPO page of CPO_OPERATOR, default period and the last 90 days, as pages.py times pages."""
    from django.urls import reverse

    from bench.pages import supervisor_client, time_page

    client = supervisor_client()
    page = reverse("charging_sessions:operator-detail", args=[CPO_OPERATOR])
    return {
        "default period": time_page(client, page),
        "last 90 days": time_page(client, f"{page}?period=last90"),
    }


def worker(what: str) -> None:
    import django

    django.setup()
    if what == "search":
        result = search_worker()
    elif what == "cpo":
        result = cpo_worker()
    else:
        result = pull_worker(what)
    print("DIRJSON " + json.dumps(result), flush=True)


def run_worker(what: str, env: dict[str, str]) -> dict:
    out = subprocess.run([PYTHON, "-m", "bench.directory", "--worker", what], cwd=ROOT, env=env, capture_output=True)
    stdout = out.stdout.decode(errors="replace")
    for line in stdout.splitlines():
        if line.startswith("DIRJSON "):
            return json.loads(line.removeprefix("DIRJSON "))
    stderr = out.stderr.decode(errors="replace")
    raise RuntimeError(f"bench.directory --worker {what} failed:\n{stdout[-2000:]}\n{stderr[-3000:]}")


# --- the run -------------------------------------------------------------------------------------


def _failed(name: str, target: str, error: Exception) -> None:
    report(name, "failed", None, target, False, (str(error).strip().splitlines() or [""])[-1][:200])
    log(f"{name} failed: {error}")


def pulls_and_search(kind: str, pg_url: str | None) -> None:
    label = "SQLite" if kind == "sqlite" else "PostgreSQL"
    url = new_database(kind, "bench_directory", workdir("directory"), pg_url)
    env = portal_env(url)
    manage(env, "migrate", "--verbosity", "0")
    # The run sits in the middle of a 4-hour churn tick: the network changes only when churned.
    epoch = time.time() - CHURN_SECONDS / 2
    full_name, full_target = (
        f"EVSE full pull ({EVSE_COUNT:,} EVSEs), {label}",
        f"≤ {FULL_TARGET_SECONDS:.0f} s (3 min for 500,000), growth < {MEMORY_TARGET_MB:.0f} MB",
    )
    delta_name = f"EVSE delta pull ({DELTA_CHANGES:,} EVSEs changed), {label}"
    delta_target = f"≤ {DELTA_TARGET_SECONDS:.0f} s per {DELTA_PER:,} changed records"
    log(f"directory on {label}: full pull of {EVSE_COUNT:,} EVSEs")
    with simulator(epoch) as sim_url:
        sim_env = {**env, "OICP_BASE_URL": sim_url}
        try:
            bare = run_worker("fetch-full", sim_env)
            ours = run_worker("pull-full", sim_env)
        except Exception as error:  # a row in the table, never a failed run
            _failed(full_name, full_target, error)
            return
        report(
            full_name,
            f"{ours['seconds']:.1f} s, memory +{ours['growth_mb']:.0f} MB; download + json.loads "
            f"{bare['seconds']:.1f} s, +{bare['growth_mb']:.0f} MB",
            ours["seconds"] / bare["seconds"],
            full_target,
            ours["ok"] and ours["seconds"] <= FULL_TARGET_SECONDS and ours["growth_mb"] < MEMORY_TARGET_MB,
            f"{ours['pages']} pages, {bare['bytes'] / 1e6:.0f} MB of JSON; {ours['summary']}",
        )
        if kind == "postgres":
            psql(pg_url, "-c", "VACUUM ANALYZE", database="bench_directory")  # as autovacuum would after the load
        log(f"directory on {label}: delta of {DELTA_CHANGES:,} changed EVSEs")
        try:
            churn(sim_url, DELTA_CHANGES)
            bare = run_worker("fetch-delta", sim_env)
            ours = run_worker("pull-delta", sim_env)
        except Exception as error:
            _failed(delta_name, delta_target, error)
        else:
            records = bare["records"]
            allowed = DELTA_TARGET_SECONDS * max(1.0, records / DELTA_PER)
            report(
                delta_name,
                f"{ours['seconds']:.1f} s for {records:,} records; download + json.loads {bare['seconds']:.1f} s",
                ours["seconds"] / bare["seconds"],
                delta_target,
                ours["ok"] and ours["seconds"] <= allowed,
                f"{ours['pages']} pages, memory +{ours['growth_mb']:.0f} MB; {ours['summary']}",
            )

    search_name = f"place search ({EVSE_COUNT:,} EVSEs), {label}"
    search_target = f"p95 < {SEARCH_TARGET_MS:.0f} ms"
    try:
        found = run_worker("search", env)
    except Exception as error:
        _failed(search_name, search_target, error)
        return
    notes = [
        f"{found['hits']}/{found['searches']} found the misspelt street's station",
        "e.g. " + ", ".join(f"“{query}”" for query in found["examples"]),
    ]
    if found["status"] != 200:
        notes.insert(0, f"HTTP {found['status']}")
    report(
        search_name,
        f"p95 {found['p95']:.1f} ms (p50 {found['p50']:.1f}), {found['queries']} queries; "
        f"{SEARCHES} indexed lookups by evse_key p95 {found['lookup_p95']:.2f} ms",
        found["p95"] / SEARCH_TARGET_MS,
        search_target,
        found["p95"] < SEARCH_TARGET_MS and found["status"] == 200,
        "; ".join(notes),
    )
    if found["p95"] >= SEARCH_TARGET_MS:
        log(f"  slowest SQL of the place search: {found['slowest_sql']}")


def cpo_page(sets: dict[tuple[str, str], Dataset]) -> None:
    for kind in [k for k in ("sqlite", "postgres") if (k, "full") in sets]:
        full, small = sets[(kind, "full")], sets[(kind, "small")]
        name = f"CPO page ({full.stops:,} stops), {full.label}"
        target = f"p95 < {CPO_TARGET_MS:.0f} ms, queries constant"
        log(f"CPO page on {full.label}: {full.stops:,} stop requests")
        try:
            big = run_worker("cpo", portal_env(full.url))
            little = run_worker("cpo", portal_env(small.url))
        except Exception as error:
            _failed(name, target, error)
            continue
        for period, figures in big.items():
            same = figures["queries"] == little[period]["queries"]
            notes = [f"{CPO_OPERATOR}, {period}"]
            if not same:
                notes.append("queries grow with the data")
            if figures["status"] != 200:
                notes.append(f"HTTP {figures['status']}")
            report(
                f"CPO page {period} ({full.stops:,} stops), {full.label}",
                f"p95 {figures['p95']:.1f} ms (p50 {figures['p50']:.1f}); {figures['queries']} queries "
                f"(1/100 size: {little[period]['queries']})",
                figures["p95"] / CPO_TARGET_MS,
                target,
                figures["p95"] < CPO_TARGET_MS and same and figures["status"] == 200,
                "; ".join(notes),
            )
            if figures["p95"] >= CPO_TARGET_MS:
                log(f"  slowest SQL of the CPO page: {figures['slowest_sql']}")


def run(pg_url: str | None) -> None:
    for kind in DATABASES:
        if kind == "postgres" and not pg_url:
            continue
        pulls_and_search(kind, pg_url)
    cpo_page(datasets(workdir("data"), pg_url))


def main() -> None:
    if "postgres" in DATABASES:
        with postgres_server() as pg_url:
            run(pg_url)
    else:
        run(None)


if __name__ == "__main__":
    os.chdir(ROOT)
    if len(sys.argv) == 5 and sys.argv[1] == "--simulator":
        simulator_main(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
