"""The benchmarks' own code: their data (written through the audit service's bulk path, so the chain
verifies), the sustained queue's verdict and the CPU accounting."""

import os

from sessions import services
from sessions.models import AuditRecord, ChargingSession, RemoteStopRequest


def test_generated_load_data_is_a_valid_keyed_chain_with_its_own_times(db):
    from bench.generate_load_data import generate

    generate(sessions=20, stops=40, audit=120, seed=1)
    assert (ChargingSession.objects.count(), RemoteStopRequest.objects.count(), AuditRecord.objects.count()) == (
        20,
        40,
        120,
    )
    times = list(AuditRecord.objects.order_by("id").values_list("occurred_at", flat=True))
    assert times == sorted(times) and (times[-1] - times[0]).total_seconds() == 119 * 5
    verification = services.verify_audit_chain()
    assert verification.ok and verification.records_checked == 120


def test_the_sustained_queue_is_bounded_unless_it_grows_beyond_a_second_of_traffic():
    from bench.sustained import queue_bounded

    steady = [(t, 100 + (t % 4) * 10) for t in range(0, 60, 2)]
    assert queue_bounded(steady, rate=500)
    small_but_rising = [(t, 5 * t) for t in range(0, 60, 2)]  # 290 at the end: under a second of traffic
    assert queue_bounded(small_but_rising, rate=500)
    growing = [(t, 20 * t) for t in range(0, 60, 2)]  # 1,160 and rising by 20 a second
    assert not queue_bounded(growing, rate=500)


def test_a_process_groups_cpu_time_is_counted_to_its_component_with_its_ended_children():
    """bench/cpu.py, behind the sustained benchmark's "where the cores went": a server started in a
    session of its own is its process group; its CPU time between two snapshots is its share, the
    time of its children that ended meanwhile included (PostgreSQL's autovacuum workers: the first
    run counted them as "other")."""
    import subprocess
    import sys

    from bench import cpu

    burn = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"
    child = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {burn!r}])"  # run and reaped
    server = f"{child}\n{burn}\nprint(1, flush=True)\nsys.stdin.read()"
    before = cpu.snapshot()
    burner = subprocess.Popen(
        [sys.executable, "-c", server], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert burner.stdout.readline() == b"1\n"  # its child burnt 0.4 s and ended, it burnt 0.4 s
        after = cpu.snapshot()
    finally:
        burner.communicate(b"")
    cores = cpu.shares(before, after, {"burner": cpu.groups(burner.pid), "nobody": cpu.named("no-such-process")})
    elapsed = after.at - before.at
    assert 0.75 <= cores["burner"] * elapsed <= 1.4  # 0.8 s, and two interpreters' start-up
    assert cores["nobody"] == 0
    assert cores["busy"] >= cores["burner"] and cores["other"] >= 0
    assert cpu.describe(cores).startswith(f"CPU (cores of {os.cpu_count()}): burner ")
