"""Scale-out, as README "Scaling out" describes it: two web processes and two workers on one
PostgreSQL and one Redis serve stops without duplicates.

Each web server is a separate gunicorn (`--workers 1`) on its own port; agents log in through the
login form with `requests` (CSRF token and cookies like a browser), and for every session a stop
is submitted through both servers at the same moment. Exactly one RemoteStopRequest and exactly
one Hubject call per session must result, and every stop must reach a final state.

The same two web servers and two workers also take Hubject's pushes (issue 16): notifications and
CDRs for many sessions, each session's alternately through both servers, acknowledged once stored
and applied by both workers at once; every message exactly once, each session's in arrival order.

PostgreSQL only: SQLite is for one machine (README). `make test` runs this in its PostgreSQL run.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, defaultdict

import pytest
import requests
from django.db import connection

from sessions import roles
from sessions.models import AuditRecord, ChargingSession, InboundMessage, RemoteStopRequest, StopReason
from tests import servers
from tests.factories import ChargingSessionFactory, UserFactory
from tests.test_inbound import CDR, END, NOTIFY_URL, PROGRESS, START, cdr_url, msg

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SESSIONS = 20


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip(
            "scale-out needs PostgreSQL (SQLite is one machine only); `make test` runs it in its "
            "PostgreSQL run, or set DATABASE_URL=postgres://..."
        )


def _log_in(base_url: str, username: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(f"{base_url}/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = browser.post(
        f"{base_url}/login/",
        timeout=30,
        allow_redirects=False,
        data={"username": username, "password": "pw", "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base_url}/login/"},
    )
    assert response.status_code == 302, response.text[:500]
    assert "sessionid" in browser.cookies
    return browser


def test_two_web_servers_and_two_workers_make_one_request_and_one_call_per_session(postgres_only, simulator, redis_url):
    broker = redis_url.rsplit("/", 1)[0] + "/6"
    database_url = servers.database_url_for_children()
    env = servers.child_env(
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker,
        OICP_BASE_URL=simulator.url,
        CACHE_URL=broker.replace("redis://", "rediscache://", 1),
    )
    for index in (1, 2):
        UserFactory(username=f"scale-agent-{index}", role=roles.AGENT)
    sessions = [ChargingSessionFactory(evse_id=f"DE*ACC*E{9000 + n:05d}*1") for n in range(SESSIONS)]
    simulator.patch_behaviours({"operators": {"DE*ACC": {"action": "accept"}}})
    simulator.add_sessions(*sessions)

    worker_one = servers.celery_worker(
        broker_url=broker, database_url=database_url, oicp_base_url=simulator.url, concurrency=4
    )
    worker_two = servers.celery_worker(
        broker_url=broker, database_url=database_url, oicp_base_url=simulator.url, concurrency=4
    )
    with (
        servers.gunicorn_server(env=env) as web_one,
        servers.gunicorn_server(env=env) as web_two,
        worker_one,
        worker_two,
    ):
        browsers = [_log_in(web_one, "scale-agent-1"), _log_in(web_two, "scale-agent-2")]
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def submit(base_url: str, browser: requests.Session) -> None:
            barrier.wait(timeout=60)
            for charging_session in sessions:  # both servers, same order: they collide on every session
                response = browser.post(
                    f"{base_url}/sessions/{charging_session.pk}/stop/",
                    timeout=60,
                    allow_redirects=False,
                    data={"reason": StopReason.DRIVER_ASKED, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
                    headers={"Referer": f"{base_url}/sessions/{charging_session.pk}/"},
                )
                statuses.append(response.status_code)

        threads = [
            threading.Thread(target=submit, args=args) for args in zip((web_one, web_two), browsers, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert statuses == [302] * (2 * SESSIONS)  # every submission answered (created or refused)

        pks = list(RemoteStopRequest.objects.filter(charging_session__in=sessions).values_list("pk", flat=True))

        def all_final():
            return (
                not RemoteStopRequest.objects.filter(pk__in=pks)
                .exclude(state__in=RemoteStopRequest.FINAL_STATES)
                .exists()
            )

        servers.wait_until(all_final, timeout=180, interval=0.5, message="every stop to become final")

    per_session = Counter(
        RemoteStopRequest.objects.filter(charging_session__in=sessions).values_list("charging_session_id", flat=True)
    )
    assert per_session == Counter({charging_session.pk: 1 for charging_session in sessions})
    assert set(RemoteStopRequest.objects.filter(pk__in=pks).values_list("state", flat=True)) == {
        RemoteStopRequest.State.ACCEPTED
    }
    ours = {charging_session.session_id for charging_session in sessions}
    calls = Counter(
        entry["body"]["SessionID"] for entry in simulator.received() if (entry["body"] or {}).get("SessionID") in ours
    )
    assert calls == Counter({session_id: 1 for session_id in ours})


PUSHED_SESSIONS = 60


def test_two_web_servers_and_two_workers_apply_every_pushed_message_once_in_order_per_session(
    postgres_only, simulator, redis_url
):
    broker = redis_url.rsplit("/", 1)[0] + "/7"
    database_url = servers.database_url_for_children()
    env = servers.child_env(
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker,
        OICP_BASE_URL=simulator.url,
        CACHE_URL=broker.replace("redis://", "rediscache://", 1),
        PORTAL_TEST_INBOUND_APPLY="worker",  # acknowledged once stored, applied by the workers
    )
    worker_env = {"PORTAL_TEST_INBOUND_APPLY": "worker"}
    workers = [
        servers.celery_worker(
            broker_url=broker,
            database_url=database_url,
            oicp_base_url=simulator.url,
            concurrency=4,
            extra_env=worker_env,
        )
        for _ in range(2)
    ]
    session_ids = [f"{number:08d}-5ca1-4e00-8000-000000000016" for number in range(PUSHED_SESSIONS)]
    with (
        servers.gunicorn_server(env=env) as web_one,
        servers.gunicorn_server(env=env) as web_two,
        workers[0] as worker_one,
        workers[1] as worker_two,
    ):
        statuses: list[int] = []

        def push(numbers: range) -> None:
            http = requests.Session()
            for step, sample in enumerate((START, PROGRESS, END, CDR)):
                for number in numbers:
                    # Each session's messages alternately through both servers, one after the other.
                    base_url = (web_one, web_two)[(number + step) % 2]
                    url = base_url + (cdr_url() if sample is CDR else NOTIFY_URL)
                    response = http.post(url, json=msg(sample, SessionID=session_ids[number]), timeout=60)
                    statuses.append(response.status_code)

        half = PUSHED_SESSIONS // 2
        threads = [
            threading.Thread(target=push, args=(numbers,)) for numbers in (range(half), range(half, PUSHED_SESSIONS))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        total = 4 * PUSHED_SESSIONS
        assert statuses == [200] * total

        def all_applied():
            return not InboundMessage.objects.filter(session_id__in=session_ids).pending().exists()

        servers.wait_until(all_applied, timeout=120, interval=0.2, message="every pushed message to be applied")
        worker_pids = {str(worker_one.proc.pid), str(worker_two.proc.pid)}

    messages = list(
        InboundMessage.objects.filter(session_id__in=session_ids)
        .order_by("id")
        .values_list("pk", "session_id", "applier", "apply_error")
    )
    assert len(messages) == total
    assert all(error == "" for *_, error in messages)
    # Both workers applied: `applier` is "host:pid:run".
    assert {applier.split(":")[1] for _, _, applier, _ in messages} == worker_pids
    # Exactly once, each session's in arrival order: the audit chain's order of the records.
    arrival: dict[str, list[int]] = defaultdict(list)
    for pk, session_id, _, _ in messages:
        arrival[session_id].append(pk)
    chained: dict[str, list[int]] = defaultdict(list)
    records = AuditRecord.objects.filter(
        event_type__in=(AuditRecord.EventType.NOTIFICATION_RECEIVED, AuditRecord.EventType.CDR_RECEIVED),
        charging_session__session_key__in=session_ids,
    ).order_by("id")
    for session_key, data in records.values_list("charging_session__session_key", "data"):
        chained[session_key].append((data if isinstance(data, dict) else json.loads(data))["inbound_message_id"])
    assert chained == arrival
    closed = ChargingSession.objects.filter(session_key__in=session_ids, status=ChargingSession.Status.CLOSED)
    assert closed.count() == PUSHED_SESSIONS
