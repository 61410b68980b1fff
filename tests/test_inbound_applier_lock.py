"""The inbound applier's lock (sessions/services/inbound_queue.py): short, owned, kept alive by a heartbeat.

On the real Redis (what production and the workers use: its compare-and-expire and compare-and-delete
scripts) and on locmem (the unit tests' cache: the same steps, not atomic). The lock's lifetime is
shrunk to a second here so the heartbeat's work shows in a few seconds. The crash itself, with real
worker processes, is tests/test_inbound_applier_recovery.py.
"""

from __future__ import annotations

import time
from unittest import mock

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.test import TestCase

from sessions import services
from sessions.inbound import queue as inbound_queue
from sessions.inbound import selectors as inbound_selectors
from sessions.inbound.queue import ApplierLock
from tests import test_inbound
from tests.test_inbound import NOTIFY_URL, START, msg

LOCK_SECONDS = 1


@pytest.fixture(params=["redis", "locmem"])
def lock_cache(request, settings, monkeypatch):
    if request.param == "redis":
        location = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + "/5"
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": location,
                "KEY_PREFIX": "lock-test",
            }
        }
    else:
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "applier-lock-test"}
        }
    monkeypatch.setattr(inbound_queue, "APPLIER_LOCK_SECONDS", LOCK_SECONDS)
    monkeypatch.setattr(inbound_queue, "APPLIER_HEARTBEAT_SECONDS", LOCK_SECONDS / 3)
    cache = caches["default"]
    cache.clear()
    yield cache
    cache.clear()


def _holder(cache):
    return cache.get(inbound_queue.APPLIER_KEY)


def test_the_lock_is_short_and_renewed_three_times_per_lifetime():
    assert inbound_queue.APPLIER_LOCK_SECONDS <= 10  # a crash holds up the queue this long at most (was 120 s)
    assert inbound_queue.APPLIER_HEARTBEAT_SECONDS <= inbound_queue.APPLIER_LOCK_SECONDS / 3


def test_one_holder_at_a_time_and_the_value_names_it(lock_cache):
    first, second = ApplierLock(), ApplierLock()
    assert first.acquire()
    try:
        assert _holder(lock_cache) == first.token
        assert not second.acquire()
        second.release()  # not the holder: frees nothing
        assert _holder(lock_cache) == first.token
    finally:
        first.release()
    assert _holder(lock_cache) is None
    assert second.acquire()
    second.release()


def test_a_lock_that_lapsed_and_was_retaken_is_neither_renewed_nor_freed_by_its_first_owner(lock_cache):
    first = ApplierLock()
    assert first.acquire()
    first._stop.set()  # A freezes (no heartbeat) ...
    lock_cache.delete(inbound_queue.APPLIER_KEY)  # ... for longer than the lock lives
    second = ApplierLock()
    assert second.acquire()
    try:
        assert first.refresh() is False
        first.release()
        assert _holder(lock_cache) == second.token  # B's lock survives A letting go
        assert second.refresh() is True
    finally:
        second.release()
    assert _holder(lock_cache) is None


def test_an_applier_whose_lock_was_taken_over_notices_and_stops(lock_cache):
    first = ApplierLock()
    assert first.acquire()
    try:
        lock_cache.delete(inbound_queue.APPLIER_KEY)  # lapsed while A was paused
        second = ApplierLock()
        assert second.acquire()
        # A's next heartbeat finds B's token: A stops applying after the message in hand.
        deadline = time.monotonic() + 5 * LOCK_SECONDS
        while first.working() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.lost and not first.working()
        assert _holder(lock_cache) == second.token
    finally:
        first.release()
        second.release()


def test_the_heartbeat_keeps_the_lock_beyond_its_lifetime_while_the_applier_works(lock_cache):
    lock = ApplierLock()
    assert lock.acquire()
    try:
        until = time.monotonic() + 3 * LOCK_SECONDS
        while time.monotonic() < until:
            assert lock.working()
            time.sleep(0.05)
        assert _holder(lock_cache) == lock.token
        assert not ApplierLock().acquire()
    finally:
        lock.release()


def test_release_stops_the_heartbeat_and_frees_the_lock(lock_cache):
    lock = ApplierLock()
    assert lock.acquire()
    heartbeat = lock._thread
    assert heartbeat.is_alive()
    lock.release()
    assert not heartbeat.is_alive()
    assert _holder(lock_cache) is None


def test_a_killed_applier_lets_go_within_the_lock_lifetime(lock_cache):
    dead = ApplierLock()
    assert dead.acquire()
    dead._stop.set()  # its process is gone: no heartbeat, no release
    dead._thread.join(timeout=1)
    time.sleep(LOCK_SECONDS + 0.2)
    assert _holder(lock_cache) is None
    assert ApplierLock().acquire()


def test_an_applier_that_hangs_stops_renewing_its_lock(lock_cache, monkeypatch):
    monkeypatch.setattr(inbound_queue, "APPLIER_STALL_SECONDS", 0.3)
    lock = ApplierLock()
    assert lock.acquire()
    try:
        time.sleep(LOCK_SECONDS + 0.8)  # no working(): a database call that never returns
        assert _holder(lock_cache) is None
    finally:
        lock.release()


# --- the applier with the lock -------------------------------------------------------------------


@pytest.fixture
def queued(db, client, settings, monkeypatch, lock_cache):
    """Two stored notifications; the kicks and follow-ups are captured, not published."""
    settings.OICP_INBOUND_APPLY = "worker"
    with mock.patch("sessions.tasks.apply_inbound_messages.apply_async") as apply_async:
        for number in range(2):
            monkeypatch.setattr(inbound_queue, "_last_kick", 0.0)
            with TestCase.captureOnCommitCallbacks(execute=True):
                test_inbound.post(client, NOTIFY_URL, msg(START, SessionID=f"{number:08d}-02d8-4fa0-b810-9a9d50d2c527"))
        apply_async.reset_mock()
        yield apply_async


def test_a_message_that_takes_longer_than_the_lock_lives_does_not_lose_it(queued, lock_cache, monkeypatch):
    apply = inbound_queue._apply
    rivals = []

    def slow(message_id):
        time.sleep(1.6 * LOCK_SECONDS)  # a slow transaction (SQLite's busy timeout is 20 s)
        rivals.append(ApplierLock().acquire())
        return apply(message_id)

    monkeypatch.setattr(inbound_queue, "_apply", slow)
    assert services.apply_inbound_messages() == 2
    assert rivals == [False, False]
    assert _holder(lock_cache) is None


def test_a_burst_pause_longer_than_the_lock_lives_does_not_lose_it(queued, lock_cache, monkeypatch):
    pauses = iter([True] * 10 + [False] * 10)
    rivals = []

    def burst():
        rivals.append(ApplierLock().acquire())
        return next(pauses)

    monkeypatch.setattr(inbound_queue, "_burst_in_progress", burst)
    monkeypatch.setattr(inbound_queue, "BURST_PAUSE_SECONDS", 0.25)  # 10 pauses: 2.5 lock lifetimes
    assert services.apply_inbound_messages() == 2
    assert not any(rivals)


def test_a_run_that_finds_the_lock_taken_comes_back_once_just_after_it_lapses(queued, lock_cache, monkeypatch):
    monkeypatch.setattr(inbound_queue, "APPLIER_LOCK_SECONDS", 10)  # as in production
    dead = ApplierLock()
    assert dead.acquire()
    dead._stop.set()  # killed mid-apply: the lock lapses by itself
    expected = 10.0
    if isinstance(lock_cache, RedisCache):  # Redis says how long the lock has left: come back then
        lock_cache._cache.get_client(write=True).pexpire(lock_cache.make_key(inbound_queue.APPLIER_KEY), 3000)
        expected = 3.0
    for _ in range(100):  # a burst of kicks, all finding the lock taken
        assert services.apply_inbound_messages() == 0
    assert queued.call_count == 1  # one follow-up, not a hundred
    kwargs = queued.call_args.kwargs
    assert kwargs["kwargs"] == {"follow_up": True}
    margin = inbound_queue.APPLIER_FOLLOW_UP_MARGIN_SECONDS
    assert expected - 1 < kwargs["countdown"] <= expected + margin

    # The follow-up, once the dead lock lapsed, applies what waited.
    lock_cache.delete(inbound_queue.APPLIER_KEY)
    assert services.apply_inbound_messages(follow_up=True) == 2
    assert inbound_selectors.pending_inbound_messages() == 0


def test_a_follow_up_that_finds_a_live_applier_schedules_the_next_one(queued, lock_cache):
    live = ApplierLock()
    assert live.acquire()
    try:
        assert services.apply_inbound_messages() == 0
        assert services.apply_inbound_messages(follow_up=True) == 0  # the first follow-up, still taken
        assert queued.call_count == 2
        assert services.apply_inbound_messages() == 0  # the second one is waiting
        assert queued.call_count == 2
    finally:
        live.release()
    assert services.apply_inbound_messages(follow_up=True) == 2
