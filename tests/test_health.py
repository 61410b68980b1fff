"""/healthz for load balancers: database, broker and worker; 200 or 503; nothing else revealed."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from django.db import OperationalError
from django.test import Client

from sessions import health
from tests import servers

pytestmark = pytest.mark.django_db
KEYS = {"database", "broker", "worker"}


@pytest.fixture(autouse=True)
def fresh_worker_cache():
    health.reset_worker_cache()
    yield
    health.reset_worker_cache()


def _health() -> tuple[int, dict, bytes]:
    response = Client().get("/healthz")  # anonymous, as a load balancer asks
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    return response.status_code, json.loads(response.content), response.content


def _reveals_nothing(raw: bytes) -> None:
    body = json.loads(raw)
    assert set(body) == KEYS and set(body.values()) <= {"ok", "error"}
    # Exactly the three keys with ok/error: no versions, hosts, ports or exception texts.
    assert len(raw) == len(json.dumps(body).encode())


@pytest.mark.integration
def test_all_ok_with_redis_and_a_worker(live):
    status, body, raw = _health()
    assert (status, body) == (200, {"database": "ok", "broker": "ok", "worker": "ok"})
    _reveals_nothing(raw)


@pytest.mark.integration
def test_the_worker_answer_is_cached_so_polling_does_not_ping_the_broker_each_time(live):
    from portal.celery import app

    real_ping = app.control.ping
    with mock.patch.object(app.control, "ping", side_effect=real_ping) as ping:
        for _ in range(5):
            assert _health()[0] == 200
        assert ping.call_count == 1
        health.reset_worker_cache()  # what the TTL's expiry does
        assert _health()[0] == 200
        assert ping.call_count == 2
    assert ping.call_args.kwargs["timeout"] <= 1.0


@pytest.mark.integration
def test_broker_down_is_503_and_names_no_detail():
    with servers.celery_publisher(f"redis://127.0.0.1:{servers.free_port()}/0"):  # nothing listens there
        status, body, raw = _health()
    assert (status, body) == (503, {"database": "ok", "broker": "error", "worker": "error"})
    _reveals_nothing(raw)


@pytest.mark.integration
def test_no_worker_listening_is_503(redis_url):
    # Database 5 of the test Redis: the broker answers, but no worker consumes or replies there.
    with servers.celery_publisher(redis_url.rsplit("/", 1)[0] + "/5"):
        status, body, raw = _health()
    assert (status, body) == (503, {"database": "ok", "broker": "ok", "worker": "error"})
    _reveals_nothing(raw)


def test_database_down_is_503_without_the_error_text():
    failure = OperationalError('connection to server at "db.internal" (10.1.2.3), port 5432 failed: secret-user')
    with mock.patch.object(health.connection, "cursor", side_effect=failure), \
         mock.patch.object(health, "check_broker", return_value="ok"), \
         mock.patch.object(health, "check_worker", return_value="ok"):
        status, body, raw = _health()
    assert (status, body) == (503, {"database": "error", "broker": "ok", "worker": "ok"})
    assert b"db.internal" not in raw and b"secret-user" not in raw
    _reveals_nothing(raw)


def test_only_get_and_head():
    assert Client().head("/healthz").status_code in (200, 503)
    assert Client().post("/healthz").status_code in (403, 405)  # CSRF first, then the method
