"""The stuck queue prints its rows from plain values computed once a page, in one tag (bench/NOTES.md,
"Pages at full size again"): each row is the markup the per-row templates printed, value for value,
for every kind of row and viewer, and the page costs the same queries whatever its rows."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from sessions import roles
from sessions.models import ChargingSession, RemoteStopRequest
from sessions.oicp.status_codes import describe
from sessions.stops.presenters import clock
from sessions.stops.presenters.stuck_rows import id_url
from tests.factories import ChargingSessionFactory, OperatorFactory, RemoteStopRequestFactory, UserFactory

pytestmark = pytest.mark.usefixtures("no_broker")
State = RemoteStopRequest.State
STUCK = reverse("charging_sessions:stuck-sessions")
CALL_CPO = (
    "Call the CPO&#x27;s hotline: has the session ended? If the driver is still charging, send the stop again; "
    "if it stopped, nothing to send: the CDR will confirm it."
)
ASK_CPO = (
    "Ask the CPO&#x27;s hotline whether the session is still running. Close the record by hand only once the CPO "
    "confirms it ended (nothing is sent to Hubject)."
)


def same_markup(html: str) -> str:
    """Whitespace as the browser reads it: runs of it are one space, none at a cell's edges (the
    includes' line breaks were there); the CSRF token is masked (a new one per response)."""
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', 'name="csrfmiddlewaretoken" value="…"', html)
    html = re.sub(r"\s+", " ", html)
    return re.sub(r"\s*</td>", "</td>", re.sub(r"(<td[^>]*>)\s*", r"\1", html)).strip()


def row_of(html: str, dom_id: str) -> str:
    return re.search(rf'<tr id="{dom_id}".*?</tr>', html, re.S).group(0)


def session_id_cell(value: str) -> str:
    return (
        f'<span class="id session-id"><code title="{value}">{value}</code><button type="button" class="copy" '
        f'data-copy="{value}" aria-label="Copy SessionID {value}">Copy</button></span>'
    )


def close_form(session_pk: int, where: str) -> str:
    return f"""<details class="close-by-hand">
  <summary>Close by hand…</summary>
  <form method="post" action="{reverse("charging_sessions:close-session", args=[session_pk])}"><input type="hidden" name="csrfmiddlewaretoken" value="…">
    <label for="close-reason-{where}-{session_pk}">Reason (required; not a remote stop)</label>
    <textarea id="close-reason-{where}-{session_pk}" name="reason" rows="2" required minlength="5" maxlength="1000"></textarea>
    <button type="submit">Close the record</button>
  </form>
</details>"""


@pytest.fixture
def world(db, settings):
    """A stop never confirmed at a CPO the directory knows (agent, case reference), a failed one with
    an unknown outcome sent by the system, and a session silent since its charging ended (its last
    stop, failed with an unknown outcome, is on the queue too: four rows)."""
    settings.STUCK_SESSION_HOURS = 4
    now = timezone.now().replace(microsecond=0)
    OperatorFactory(operator_id="DE*ACC", name="Offgrid <Ladestationen>", hotline="+49 30 9876543")
    known = RemoteStopRequestFactory(
        charging_session=ChargingSessionFactory(evse_id="DE*ACC*E1*1"),
        requested_by=UserFactory(username="ana"),
        case_reference="CASE-7",
        state=State.UNCONFIRMED,
        finished_at=now - timedelta(minutes=90),
        oicp_code="000",
    )
    unknown = RemoteStopRequestFactory(
        charging_session=ChargingSessionFactory(evse_id="DE*XYZ*E2*1"),
        requested_by=None,
        state=State.FAILED,
        outcome_unknown=True,
        finished_at=now - timedelta(minutes=30),
    )
    silent = ChargingSessionFactory(
        evse_id="DE*XYZ*E3*1",
        status=ChargingSession.Status.CHARGING_ENDED,
        charging_ended_at=now - timedelta(hours=4),
        last_update_at=now - timedelta(hours=5),
    )
    RemoteStopRequestFactory(
        charging_session=silent, state=State.FAILED, outcome_unknown=True, oicp_code="501", finished_at=now
    )
    return {"known": known, "unknown": unknown, "silent": silent}


@pytest.fixture
def supervisor(client, db):
    client.force_login(UserFactory(username="sup", role=roles.SUPERVISOR))
    return client


def test_a_stuck_stop_row_is_the_markup_it_was(supervisor, world):
    stop, cs = world["known"], world["known"].charging_session
    since = clock(stop.finished_at)
    expected = f"""<tr id="stuck-stop-{stop.pk}">
  <td data-label="Stuck since"><strong><time datetime="{since.iso}" title="{since.text}">1 h 30 min</time></strong></td>
  <td data-label="Why" class="why"><strong>Accepted 1 h 30 min ago, no End or CDR since</strong>
    <small class="muted">{CALL_CPO}</small></td>
  <td data-label="SessionID">{session_id_cell(cs.session_id)}</td>
  <td data-label="EvseID"><a class="mono nowrap" href="{reverse("charging_sessions:session-detail", args=[cs.pk])}">DE*ACC*E1*1</a></td>
  <td data-label="CPO" class="cpo-cell"><span class="mono">DE*ACC</span> <span class="muted">Offgrid &lt;Ladestationen&gt;</span><br><span class="id hotline"><a class="tel nowrap" href="tel:+49309876543" aria-label="Call Offgrid &lt;Ladestationen&gt; at +49 30 9876543">+49 30 9876543</a><button type="button" class="copy" data-copy="+49 30 9876543" aria-label="Copy +49 30 9876543">Copy</button></span></td>
  <td data-label="Requested by">ana<br><span class="mono nowrap">CASE-7</span></td>
  <td data-label="Actions" class="actions">
<button type="button" class="danger small" hx-get="{reverse("charging_sessions:resend-stop", args=[stop.pk])}"
        hx-target="#stop-dialog" hx-swap="innerHTML" aria-haspopup="dialog">Send stop again…</button>
{close_form(cs.pk, "stop")}
</td>
</tr>"""
    html = supervisor.get(STUCK).content.decode()
    assert same_markup(row_of(html, f"stuck-stop-{stop.pk}")) == same_markup(expected)


def test_a_failed_stop_by_the_system_and_a_silent_session_are_the_markup_they_were(supervisor, world):
    html = supervisor.get(STUCK).content.decode()
    stop = world["unknown"]
    unknown = row_of(html, f"stuck-stop-{stop.pk}")
    assert '<td data-label="Requested by">system</td>' in same_markup(unknown)
    assert (
        '<strong>Failed with an unknown outcome: the stop may have reached the CPO</strong> <small class="muted">'
        in same_markup(unknown)
    )
    assert '<td data-label="CPO" class="cpo-cell"><span class="mono">DE*XYZ</span></td>' in same_markup(unknown)

    silent = world["silent"]
    since = clock(silent.last_update_at)
    title = f"Failed (OICP 501 · {describe('501').description}). An attempt left for Hubject and no answer came back: the stop may have reached the CPO."
    expected = f"""<tr id="stuck-session-{silent.pk}">
  <td data-label="Last update"><strong><time datetime="{since.iso}" title="{since.text}">5 h</time></strong></td>
  <td data-label="Why" class="why"><strong>No update for 5 h; charging ended 4 h ago, no CDR since</strong> <small class="muted">{ASK_CPO}</small></td>
  <td data-label="SessionID">{session_id_cell(silent.session_id)}</td>
  <td data-label="EvseID"><a class="mono nowrap" href="{reverse("charging_sessions:session-detail", args=[silent.pk])}">DE*XYZ*E3*1</a></td>
  <td data-label="CPO" class="cpo-cell"><span class="mono">DE*XYZ</span></td>
  <td data-label="Last stop"><span class="badge last-stop tone-bad" title="{escape(title)}"><span class="tone-mark" aria-hidden="true">✕</span> Stop failed · 501 · <strong>outcome unknown</strong></span></td>
  <td data-label="Actions" class="actions">{close_form(silent.pk, "session")}</td>
</tr>"""
    assert same_markup(row_of(html, f"stuck-session-{silent.pk}")) == same_markup(expected)


def test_a_re_sent_stop_row_follows_its_new_request_and_offers_no_second_resend(supervisor, world):
    stop = world["known"]
    newer = RemoteStopRequestFactory(charging_session=stop.charging_session, state=State.PENDING)
    url = reverse("charging_sessions:resend-stop", args=[stop.pk])
    row = supervisor.get(url, {"row": "1"}, HTTP_HX_REQUEST="true").content.decode()
    assert same_markup(row).startswith(
        f'<tr id="stuck-stop-{stop.pk}" hx-get="{url}?row=1" hx-trigger="every 2s" hx-swap="outerHTML">'
    )
    assert (
        f'<span class="resent tone-info"><span class="tone-mark" aria-hidden="true">…</span> Re-sent as request '
        f"#{newer.pk}, now: Queued</span>" in row
    )
    assert "Send stop again…" not in row and "Close by hand…" in row


def test_a_viewer_without_the_actions_gets_none(client, world):
    viewer = UserFactory(username="viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_stuck_sessions"))
    client.force_login(viewer)
    html = client.get(STUCK).content.decode()
    assert html.count("<tr id=") == 4
    assert same_markup(html).count('<td data-label="Actions" class="actions"></td>') == 4
    assert "Send stop again…" not in html and "Close by hand…" not in html and 'id="stop-dialog"' not in html


def test_the_page_costs_the_same_queries_for_one_row_or_many(supervisor, world):
    supervisor.get(STUCK)  # its session and permissions read once, as on any page
    with CaptureQueriesContext(connection) as many:
        assert supervisor.get(STUCK).content.decode().count("<tr id=") == 4
    RemoteStopRequest.objects.exclude(pk=world["known"].pk).delete()
    ChargingSession.objects.filter(pk=world["silent"].pk).delete()
    with CaptureQueriesContext(connection) as one:
        assert supervisor.get(STUCK).content.decode().count("<tr id=") == 1
    assert len(many) == len(one)


def test_an_id_url_is_the_reversed_url_of_each_id():
    detail = id_url("charging_sessions:session-detail")
    for pk in (1, 95001, 10**12):
        assert detail(pk) == reverse("charging_sessions:session-detail", args=[pk])
