"""Hubject faults, end to end: every simulator behaviour, through Redis, a real worker and the simulator.

For each behaviour (set per EvseID on the simulator) the stop request must end in the right final
state, be retried only when that is safe (attempt count in the database == calls the simulator
received), tell the agent the right thing (the status fragment's headline and playbook), and leave
an audit trail with every attempt: STOP_SENDING per attempt plus an outcome record holding the
exact request and response.

This module runs its own worker with short timeouts (1.5 s read, 1 s connect, 2 attempts, 0.1 s
backoff) on database 1 of the test Redis, so the session-wide worker (database 0) never takes its
tasks; "connection refused" needs a worker pointed at a closed port, on database 2.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pytest
from django.urls import reverse

from sessions import services
from sessions.models import AuditRecord, RemoteStopRequest, StopReason
from sessions.oicp.status_codes import FAILURE_KINDS, STATUS_CODES
from sessions.stops import presenters as stop_advice
from tests import servers
from tests.factories import AgentFactory, ChargingSessionFactory

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
State = RemoteStopRequest.State
Event = AuditRecord.EventType

TIMEOUT = 1.5
FAULT_ENV = {
    "OICP_TIMEOUT_SECONDS": str(TIMEOUT),
    "OICP_CONNECT_TIMEOUT_SECONDS": "1",
    "OICP_MAX_ATTEMPTS": "2",
    "OICP_RETRY_BACKOFF_SECONDS": "0.1",
}
MAX_ATTEMPTS = 2


@dataclass(frozen=True)
class Case:
    id: str
    behaviour: dict | None  # None: nothing listens (connection refused)
    state: str
    attempts: int
    headline: str  # the exact headline the agent reads
    subject: str  # the row of the advice table the card must come from (an OICP code or a failure kind)
    http_status: int | None = None
    oicp_code: str = ""
    failure_kind: str = ""
    answered: bool = True  # an HTTP answer came back (the audit holds the response)
    extra: dict = field(default_factory=dict)

    @property
    def received(self) -> int:
        return 0 if self.behaviour is None else self.attempts


def _rejected(code: str) -> Case:
    info = STATUS_CODES[code]
    return Case(
        f"reject-{code}",
        {"action": "reject", "code": code},
        State.REJECTED,
        1,
        f"Rejected: {code} {info.description}",
        code,
        200,
        code,
    )


def _failed(
    case_id: str,
    behaviour: dict | None,
    kind: str,
    headline: str | None = None,
    http_status: int | None = None,
    oicp_code: str = "",
    answered: bool = True,
) -> Case:
    info = FAILURE_KINDS[kind]
    return Case(
        case_id,
        behaviour,
        State.FAILED,
        MAX_ATTEMPTS,
        headline or f"Failed: {info.description}",
        kind,
        http_status,
        oicp_code,
        kind,
        answered,
    )


ACCEPTED_HEADLINE = "Accepted: waiting for the CPO to end the session"
CASES = [
    Case("accepted", {"action": "accept"}, State.ACCEPTED, 1, ACCEPTED_HEADLINE, "000", 200, "000"),
    *[_rejected(code) for code in ("400", "501", "510", "022", "017")],
    # 310 "Partner did not respond" is transient: retried up to the bound, then failed.
    Case(
        "reject-310",
        {"action": "reject", "code": "310"},
        State.FAILED,
        MAX_ATTEMPTS,
        f"Failed: 310 {STATUS_CODES['310'].description}",
        "310",
        200,
        "310",
    ),
    # HTTP 5xx: temporary, retried. 500 carries a FaultBody whose message becomes the description. The
    # headline names the status Hubject answered (never "did not answer").
    _failed(
        "http-500",
        {"action": "http_error", "http_status": 500},
        "http_error",
        "Failed: Hubject answered HTTP 500: Processing error",
        500,
    ),
    *[
        _failed(
            f"http-{status}",
            {"action": "http_error", "http_status": status},
            "http_error",
            f"Failed: Hubject answered HTTP {status}",
            http_status=status,
        )
        for status in (502, 503, 504)
    ],
    # 401 (OicpERoamingFault with code 017) and 403 (empty body): not authorised, final at once.
    Case(
        "http-401",
        {"action": "http_error", "http_status": 401},
        State.REJECTED,
        1,
        f"Rejected: 017 {STATUS_CODES['017'].description}",
        "017",
        401,
        "017",
        "unauthorized",
    ),
    Case(
        "http-403",
        {"action": "http_error", "http_status": 403},
        State.REJECTED,
        1,
        "Rejected: Not authorised at Hubject (HTTP 403)",
        "unauthorized",
        403,
        "",
        "unauthorized",
    ),
    _failed(
        "html-502",
        {"action": "html_error", "http_status": 502},
        "http_error",
        "Failed: Hubject answered HTTP 502",
        http_status=502,
    ),
    _failed("html-200", {"action": "html_error", "http_status": 200}, "unreadable", http_status=200),
    _failed("non-json-200", {"action": "non_json"}, "unreadable", http_status=200),
    _failed("wrong-shape", {"action": "wrong_shape"}, "unreadable", http_status=200),
    _failed("connection-refused", None, "connection", answered=False),
    _failed("connection-reset", {"action": "reset"}, "connection", answered=False),
    Case(
        "answer-just-inside-timeout",
        {"action": "accept", "delay_seconds": TIMEOUT - 0.6},
        State.ACCEPTED,
        1,
        ACCEPTED_HEADLINE,
        "000",
        200,
        "000",
    ),
    _failed(
        "answer-just-after-timeout", {"action": "accept", "delay_seconds": TIMEOUT + 1.5}, "timeout", answered=False
    ),
    _failed("no-answer", {"action": "no_answer"}, "timeout", answered=False),
]


@pytest.fixture(scope="module")
def fault_broker(redis_url):
    return redis_url.rsplit("/", 1)[0] + "/1"


@pytest.fixture(scope="module")
def fault_worker(django_db_setup, django_db_blocker, fault_broker, simulator):
    with django_db_blocker.unblock():
        database_url = servers.database_url_for_children()
    with servers.celery_worker(
        broker_url=fault_broker,
        database_url=database_url,
        oicp_base_url=simulator.url,
        concurrency=4,
        extra_env=FAULT_ENV,
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def refused_broker(redis_url):
    return redis_url.rsplit("/", 1)[0] + "/2"


@pytest.fixture(scope="module")
def refused_worker(django_db_setup, django_db_blocker, refused_broker):
    with django_db_blocker.unblock():
        database_url = servers.database_url_for_children()
    closed_port = servers.free_port()  # bound and released: nothing listens there
    with servers.celery_worker(
        broker_url=refused_broker,
        database_url=database_url,
        oicp_base_url=f"http://127.0.0.1:{closed_port}",
        concurrency=2,
        extra_env=FAULT_ENV,
    ) as proc:
        yield proc


@pytest.fixture
def agent_web(client):
    agent = AgentFactory()
    client.force_login(agent)
    return agent, client


def _run_stop(charging_session, agent) -> RemoteStopRequest:
    stop = services.request_remote_stop(
        charging_session_id=charging_session.pk, acting_user=agent, reason=StopReason.CABLE_LOCKED
    ).stop_request

    def final():
        stop.refresh_from_db()
        return stop.state in RemoteStopRequest.FINAL_STATES

    servers.wait_until(final, timeout=90, interval=0.1, message=f"stop {stop.pk} to become final")
    return stop


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_each_hubject_fault_ends_right_is_retried_only_when_safe_and_is_explained_and_audited(
    case, request, simulator, fault_broker, agent_web, settings
):
    settings.OICP_MAX_ATTEMPTS = MAX_ATTEMPTS  # what the agent's screen says ("2 of 2")
    if case.behaviour is None:
        request.getfixturevalue("refused_worker")
        broker = request.getfixturevalue("refused_broker")
    else:
        request.getfixturevalue("fault_worker")
        broker = fault_broker
    agent, web = agent_web
    charging_session = ChargingSessionFactory()
    if case.behaviour is not None:
        simulator.patch_behaviours({"evses": {charging_session.evse_id: case.behaviour}})
        simulator.add_sessions(charging_session)  # Hubject issued it: accepted stops are not "400 invalid"

    with servers.celery_publisher(broker):
        stop = _run_stop(charging_session, agent)

    # 1. The final state, and retried only when safe: attempts in the database == calls received.
    assert stop.state == case.state, stop.last_error
    assert stop.attempt_count == case.attempts
    received = simulator.received(session_id=charging_session.session_id)
    assert len(received) == case.received
    assert all(entry["violations"] == [] for entry in received)
    assert stop.http_status == case.http_status
    assert stop.oicp_code == case.oicp_code
    # The request left but no answer came back (a reset, a read timeout): Hubject may have acted on it.
    assert stop.outcome_unknown is (case.behaviour is not None and not case.answered)

    # 2. What the agent sees: the selector and the status fragment the page polls.
    progress = stop_advice.stop_progress(stop_request=stop)
    assert progress.headline == case.headline
    page = html.unescape(web.get(reverse("charging_sessions:stop-status", args=[stop.pk])).content.decode())
    assert case.headline in page
    assert f'data-state="{case.state}"' in page
    card = progress.card
    assert card.subject == case.subject
    if case.state in (State.REJECTED, State.FAILED):
        assert progress.is_final and not progress.is_success
        # The card for the code read with the facts: after the last attempt, the session still open.
        assert card.situation == ("final_unknown" if stop.outcome_unknown else "final")
        assert (card.tone, progress.tone) == ("bad", "bad")
        assert "What to do next" in page
        for text in (card.code_line, card.context, card.meaning, card.tell_driver, card.next_step):
            assert text in page
        # Nothing is retried any more: no word on the page may promise it.
        for promise in ("trying again", "retries automatically", "retrying", "will retry"):
            assert promise not in page.lower(), promise
        if case.state == State.FAILED:
            assert f"The portal has stopped trying after {MAX_ATTEMPTS} attempts." in page
        if case.http_status and case.http_status >= 500:
            assert f"HTTP {case.http_status}" in card.code_line and "did not answer" not in page
    else:
        assert progress.is_success and (card.situation, card.tone) == ("accepted", "ok")
        assert "✓" in page and "⚠" not in page  # success in green with ✓, never amber

    # 3. The audit trail: every attempt, with the exact request and (when there was one) response.
    records = list(stop.audit_records.order_by("pk"))
    events = [record.event_type for record in records]
    outcome = {
        State.ACCEPTED: Event.STOP_ACCEPTED,
        State.REJECTED: Event.STOP_REJECTED,
        State.FAILED: Event.STOP_FAILED,
    }[case.state]
    expected = [Event.STOP_REQUESTED]
    for attempt in range(1, case.attempts + 1):
        expected += [Event.STOP_SENDING, outcome if attempt == case.attempts else Event.STOP_ATTEMPT_FAILED]
    assert events == expected
    sending = [r for r in records if r.event_type == Event.STOP_SENDING]
    assert [r.data["attempt"] for r in sending] == list(range(1, case.attempts + 1))
    outcomes = [r for r in records if r.event_type in (outcome, Event.STOP_ATTEMPT_FAILED)]
    for attempt, record in enumerate(outcomes, start=1):
        data = record.data
        assert data["attempt"] == attempt
        assert data["request"]["json"]["SessionID"] == charging_session.session_id
        assert data["request"]["headers"]["X-Correlation-ID"] == str(stop.correlation_id)
        assert data["http_status"] == case.http_status
        assert data["failure_kind"] == case.failure_kind
        if case.answered:
            assert data["response"]["status"] == case.http_status
        else:
            assert data["response"] is None
        if case.behaviour is None:
            assert data["request_sent"] is False  # refused: the stop never left the portal
        if attempt < case.attempts:
            assert data["retry_in_seconds"] > 0
    # Correlation: the simulator saw the stop's correlation id on every call.
    assert {entry["headers"]["x-correlation-id"] for entry in received} <= {str(stop.correlation_id)}
