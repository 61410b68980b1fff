"""Shared pieces of the benchmarks: processes, percentiles, the results table."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import servers  # noqa: E402  (reuse the test suite's process helpers)

RESULTS: list[dict] = []


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def report(name: str, figure: str, ratio: float | None, target: str, met: bool | None, note: str = "") -> None:
    row = {
        "name": name,
        "figure": figure,
        "ratio": "" if ratio is None else f"{ratio:.2f}",
        "target": target,
        "met": "yes" if met else ("no" if met is not None else "—"),
        "note": note,
    }
    RESULTS.append(row)
    print(
        f"[bench] {name}: {figure} | ratio {row['ratio'] or '—'} | target {target} | met: {row['met']}"
        + (f" | {note}" if note else ""),
        flush=True,
    )


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu or platform.processor()}, Python {platform.python_version()}"


def write_results(path: Path, title: str) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### {title}",
        "",
        f"Measured {when} on {machine()}.",
        "",
        "| benchmark | figure | ratio | target | met | note |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['name']} | {r['figure']} | {r['ratio']} | {r['target']} | {r['met']} | {r['note']} |" for r in RESULTS
    ]
    path.write_text("\n".join(lines) + "\n")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, check=True, **kwargs)


__all__ = ["ROOT", "servers", "percentile", "report", "write_results", "median", "run", "machine"]


# --- added for bench/run.py: collect every benchmark's rows, also from `python -m bench.dispatch` ---


def _save_rows_at_exit() -> None:
    """When BENCH_ROWS_FILE is set, append this process's rows to it (JSON lines) at exit."""
    target = os.environ.get("BENCH_ROWS_FILE")
    if not target or not RESULTS:
        return
    import json

    with open(target, "a", encoding="utf-8") as out:
        for row in RESULTS:
            out.write(json.dumps(row) + "\n")


if os.environ.get("BENCH_ROWS_FILE"):
    import atexit

    atexit.register(_save_rows_at_exit)
