"""Issue 16: the web processes tell the inbound appliers when Hubject's pushes saturate them.

As found: a burst slowed below OICP_INBOUND_BURST_RATE by the appliers at work beside it was never
seen as one (tests/test_inbound_queue.py). Each web process adds up the time its pushed requests
take, per window, and flags a window busy SATURATED_SHARE of its length in the shared cache.
"""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from sessions.inbound import saturation
from tests.test_inbound import NOTIFY_URL, START, post

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def window(monkeypatch):
    """A fresh window starting at 0 on the monotonic clock, and no flag."""
    monkeypatch.setitem(saturation._window, "started", 0.0)
    monkeypatch.setitem(saturation._window, "busy", 0.0)
    cache.delete(saturation.FLAG_KEY)


def test_a_window_spent_serving_pushes_flags_the_acknowledgements_saturated():
    step = saturation.WINDOW_SECONDS / 5
    for number in range(1, 6):
        saturation.pushed_for(step * 0.9, now=step * number)  # busy 90 % of the window
    assert saturation.acknowledgements_saturated()


def test_steady_traffic_leaves_pauses_and_no_flag():
    step = saturation.WINDOW_SECONDS / 5
    for number in range(1, 6):
        saturation.pushed_for(step * 0.4, now=step * number)  # busy 40 % of the window
    assert not saturation.acknowledgements_saturated()
    assert saturation._window["busy"] == 0.0  # the window was judged and a new one began


def test_the_flag_lapses_unless_the_next_window_is_as_busy():
    cache.set(saturation.FLAG_KEY, time.time() - 0.01)  # set by a window that ended a while ago
    assert not saturation.acknowledgements_saturated()


def test_the_cache_away_means_not_saturated_and_raises_nothing(monkeypatch):
    def away(*args, **kwargs):
        raise ConnectionError("stands for Redis being down")

    monkeypatch.setattr(saturation.cache, "get", away)
    monkeypatch.setattr(saturation.cache, "set", away)
    saturation.pushed_for(saturation.WINDOW_SECONDS, now=saturation.WINDOW_SECONDS)
    assert not saturation.acknowledgements_saturated()


def test_only_pushed_requests_count(client, monkeypatch):
    counted = []
    monkeypatch.setattr(saturation, "pushed_for", lambda seconds: counted.append(seconds))
    client.get("/login/")  # an agent's page: its time is not Hubject's
    assert counted == []
    post(client, NOTIFY_URL, START)
    assert len(counted) == 1 and 0 < counted[0] < 5
