"""Where the cores went during a benchmark run: CPU time per component, from /proc (Linux).

A figure such as "pages p95 250 ms at 500 messages a second" says little without what else had the
cores meanwhile. The sustained benchmark reports each component's share beside its row (the sixth
pass of issue 16 measured it with a script of its own; bench/NOTES.md).

A component is a set of processes: process groups (each server the benchmark starts is a session of
its own, so its group holds its workers and threads), processes by name (PostgreSQL's server and
backends), or this process. A process's time includes that of its children that ended and were
reaped (Linux adds it to the parent): PostgreSQL's autovacuum workers and closed backends come
and go within a run, and the first `make bench` with this module counted their time as "other"
(PostgreSQL 0.21 of a core and other 0.26, where a run on its own measured 0.44 and 0.10). Not
for this process: the children it reaps are wrk and the other helpers, not the agent's work. What
no component claims is "other" (wrk, Redis, the simulator, the kernel's work for them), from the
machine's own busy time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Task:
    pid: int
    group: int
    name: str
    seconds: float  # user + system, over the process's life (all its threads, its reaped children)


@dataclass(frozen=True)
class Snapshot:
    at: float  # the machine's uptime, s
    busy: float  # every core's non-idle time since boot, s
    tasks: dict[int, Task]


Matcher = Callable[[Task], bool]


def groups(*pids: int) -> Matcher:
    """The processes of these process groups (a server started in a session of its own: its pid)."""
    wanted = set(pids)
    return lambda task: task.group in wanted


def named(name: str) -> Matcher:
    return lambda task: task.name == name


def this_process() -> Matcher:
    me = os.getpid()
    return lambda task: task.pid == me


def snapshot() -> Snapshot:
    tasks = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (task := _task(entry.name)) is not None:
            tasks[task.pid] = task
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    # user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    busy = sum(int(value) for index, value in enumerate(cpu[:8]) if index not in (3, 4)) / TICKS
    return Snapshot(at=float(Path("/proc/uptime").read_text().split()[0]), busy=busy, tasks=tasks)


def shares(before: Snapshot, after: Snapshot, components: dict[str, Matcher]) -> dict[str, float]:
    """Cores each component used on average between the snapshots (a process is counted once, by
    the first component that matches it), then "other" and "busy" (the whole machine)."""
    elapsed = max(after.at - before.at, 1e-9)
    used = dict.fromkeys(components, 0.0)
    claimed = 0.0
    for pid, task in after.tasks.items():
        earlier = before.tasks.get(pid)
        spent = task.seconds - (earlier.seconds if earlier and earlier.name == task.name else 0.0)
        for component, matches in components.items():
            if matches(task):
                used[component] += spent
                claimed += spent
                break
    busy = after.busy - before.busy
    return {
        **{component: seconds / elapsed for component, seconds in used.items()},
        "other": max(busy - claimed, 0.0) / elapsed,
        "busy": busy / elapsed,
    }


def describe(cores: dict[str, float]) -> str:
    """E.g. "CPU (cores of 2): web 0.80, appliers 0.42, …, other 0.05; busy 1.75"."""
    parts = ", ".join(f"{name} {value:.2f}" for name, value in cores.items() if name != "busy")
    return f"CPU (cores of {os.cpu_count()}): {parts}; busy {cores['busy']:.2f}"


def _task(pid: str) -> Task | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None  # it ended meanwhile
    # The name is in parentheses and may hold spaces and parentheses itself: split at the last one.
    head, _, rest = text.rpartition(")")
    fields = rest.split()
    # After the name: state, ppid, pgrp, …, utime, stime, cutime, cstime at 11-14 (proc(5), from 0).
    own, reaped = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
    if int(pid) == os.getpid():
        reaped = 0  # this process's children are wrk and the helpers, not the agent's work
    return Task(pid=int(pid), group=int(fields[2]), name=head.partition("(")[2], seconds=(own + reaped) / TICKS)
