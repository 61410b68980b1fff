"""A threads-pool worker prepares every thread when it starts, not on each thread's first stop.

Issue 16 (dispatch p99): the pool starts its threads one by one as work arrives, and each new
thread's first stop opened its database connection (on PostgreSQL a new server process) and made
its Hubject client: those first stops were the p99 of a fresh worker.
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from unittest import mock

import pytest

from portal import celery as portal_celery
from sessions.stops.services import sending


def test_every_thread_of_the_pool_is_prepared_once():
    prepared: list[int] = []
    executor = ThreadPoolExecutor(max_workers=4)
    with mock.patch.object(sending, "prepare_worker_thread", lambda: prepared.append(threading.get_ident())):
        portal_celery._prepare_pool_threads(sender=SimpleNamespace(pool=SimpleNamespace(executor=executor)))
        executor.shutdown(wait=True)
    assert len(prepared) == 4 and len(set(prepared)) == 4  # four threads, each once


def test_a_thread_that_cannot_be_prepared_does_not_hold_up_the_others():
    executor = ThreadPoolExecutor(max_workers=3)
    with mock.patch.object(sending, "prepare_worker_thread", side_effect=RuntimeError("database down")):
        portal_celery._prepare_pool_threads(sender=SimpleNamespace(pool=SimpleNamespace(executor=executor)))
        executor.shutdown(wait=True)  # returns: the warm-ups ended though every one failed
    assert len(executor._threads) == 3


def test_other_pools_are_left_alone():
    portal_celery._prepare_pool_threads(sender=SimpleNamespace(pool=SimpleNamespace()))  # prefork, solo: no executor


@pytest.mark.django_db(transaction=True)
def test_preparing_a_thread_opens_its_connection_and_client():
    from django.db import connection

    def in_a_thread():
        sending.prepare_worker_thread()
        result["connected"] = connection.connection is not None
        result["client"] = getattr(sending._clients, "client", None) is not None
        connection.close()

    result: dict = {}
    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(10)
    assert result == {"connected": True, "client": True}
