"""The supervisors' list of message anomalies, one flagged message as sent, and the admin's view of them.

The flagged messages are made the way they really come: bodies posted to the inbound endpoints
(float noise, a number in an odd form, a CDR for another EVSE) and a CDR refused by a real CDR pull
against a mocked Hubject.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from sessions import roles, services
from sessions.models import InboundMessage
from sessions.oicp.anomalies import KINDS
from tests.factories import ChargingSessionFactory, UserFactory

pytestmark = pytest.mark.django_db
LIST = reverse("charging_sessions:anomalies")
ANY_TIME = {"period": ""}  # without it the list shows the last 30 days
NOTIFY_URL = "/api/oicp/notificationmgmt/v11/charging-notifications"
HBS = "https://hbs.example"
PULL_URL = f"{HBS}/api/oicp/cdrmgmt/v22/providers/DE-EMP/get-charge-detail-records-request"
EVSE = "DE*ACC*E00001*1"
HELD = "Held back: not applied to the session"
REFUSED = "Refused by the CDR pull"


def cdr_url(operator_id: str = "DE*ACC") -> str:
    return f"/api/oicp/cdrmgmt/v22/operators/{operator_id}/charge-detail-record"


def progress(session_id: str, evse_id: str = EVSE, operator_id: str = "DE*ACC", **more) -> dict:
    return {
        "Type": "Progress",
        "SessionID": session_id,
        "EvseID": evse_id,
        "OperatorID": operator_id,
        "Identification": {"RFIDMifareFamilyIdentification": {"UID": "1234ABCD"}},
        "ChargingStart": "2026-12-06T09:00:00+01:00",
        "EventOccurred": "2026-12-06T09:30:00+01:00",
        "ChargingDuration": 1800000,
        "ConsumedEnergyProgress": 9,
        **more,
    }


def cdr(session_id: str, evse_id: str = EVSE, **more) -> dict:
    return {
        "SessionID": session_id,
        "EvseID": evse_id,
        "Identification": {"RemoteIdentification": {"EvcoID": "DE-EMP-C12345678-X"}},
        "ChargingStart": "2026-12-06T09:00:00+01:00",
        "ChargingEnd": "2026-12-06T10:30:00+01:00",
        "SessionStart": "2026-12-06T08:59:00+01:00",
        "SessionEnd": "2026-12-06T10:45:00+01:00",
        "ConsumedEnergy": 21.5,
        **more,
    }


def push(client, url: str, body: dict) -> InboundMessage:
    response = client.post(url, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["Result"] is True
    return InboundMessage.objects.order_by("-pk").first()


def pull_refusing(settings, records: list) -> None:
    """A real CDR pull against a mocked Hubject serving `records` on one page."""
    settings.OICP_BASE_URL, settings.OICP_PROVIDER_ID = HBS, "DE-EMP"

    def answer(request):
        size = int(parse_qs(urlsplit(request.url).query)["size"][0])
        return (
            200,
            {},
            json.dumps(
                {
                    "content": records,
                    "number": 0,
                    "size": size,
                    "totalElements": len(records),
                    "totalPages": 1,
                    "first": True,
                    "last": True,
                    "numberOfElements": len(records),
                    "empty": not records,
                    "StatusCode": {"Code": "000"},
                }
            ),
        )

    with responses.RequestsMock() as hbs:
        hbs.add_callback(responses.POST, PULL_URL, callback=answer, content_type="application/json")
        now = timezone.now()
        report = services.pull_charge_detail_records(date_from=now - timedelta(days=1), date_to=now)
    assert report.refused == 1


def received(message: InboundMessage, when: datetime) -> InboundMessage:
    InboundMessage.objects.filter(pk=message.pk).update(received_at=when)
    message.refresh_from_db()
    return message


def days_ago(days: int, hour: int = 12) -> datetime:
    day = timezone.localdate() - timedelta(days=days)
    return timezone.make_aware(datetime.combine(day, datetime.min.time()) + timedelta(hours=hour))


@pytest.fixture
def world(client, settings):
    """Five flagged messages over 40 days, one tidy one; each with its session (or none)."""
    acc = ChargingSessionFactory(evse_id=EVSE, operator_id="DE*ACC")
    fst = ChargingSessionFactory(evse_id="NL*FST*E00002*1", operator_id="NL*FST")
    messages = {
        "number_form": received(
            push(client, NOTIFY_URL, progress(acc.session_id, ChargingDuration=48000.0)), days_ago(40)
        ),
        "rounded": received(
            push(client, NOTIFY_URL, progress(acc.session_id, ConsumedEnergyProgress=12.3456)), days_ago(20)
        ),
        "other_cpo": received(
            push(
                client,
                NOTIFY_URL,
                progress(fst.session_id, evse_id=fst.evse_id, operator_id="NL*FST", ConsumedEnergyProgress=1.23456),
            ),
            days_ago(5),
        ),
        "held_back": received(push(client, cdr_url(), cdr(acc.session_id, evse_id="DE*ACC*E99999*1")), days_ago(0, 9)),
        "tidy": received(push(client, NOTIFY_URL, progress(acc.session_id)), days_ago(0, 9)),
    }
    unknown = str(uuid.uuid4()).upper()
    pull_refusing(settings, [cdr(unknown, evse_id="XX")])
    messages["refused"] = received(
        InboundMessage.objects.get(apply_error__startswith="Refused by the CDR pull"), days_ago(0, 10)
    )
    client.logout()
    return {"acc": acc, "fst": fst, "unknown": unknown, **messages}


def login(client, role=roles.SUPERVISOR, staff=False):
    user = UserFactory(username=f"anomalies-{role}".replace(" ", "-").lower(), role=role)
    if staff:
        user.is_staff = True
        user.save()
    client.force_login(user)
    return client


def listed(response) -> list[int]:
    return [row["message"].pk for row in response.context["rows"]]


def row_html(response, message: InboundMessage) -> str:
    """The table row of one message (the rows are <tr> ... </tr> in the tbody)."""
    html = response.content.decode()
    marker = reverse("charging_sessions:anomaly-message", args=[message.pk])
    start = html.rindex("<tr>", 0, html.index(marker))
    return html[start : html.index("</tr>", start)]


# --- the list ------------------------------------------------------------------------------------


def test_the_messages_are_real_flagged_ones(world):
    assert [a["code"] for a in world["number_form"].anomalies] == ["number_form"]
    assert [a["code"] for a in world["rounded"].anomalies] == ["rounded"]
    assert world["held_back"].held_back and world["held_back"].anomalies[0]["code"] == "evse_mismatch"
    assert world["refused"].charging_session is None and world["refused"].anomalies[0]["code"] == "refused"
    assert not world["tidy"].flagged


def test_supervisor_sees_flagged_messages_newest_first_with_their_texts(client, world):
    response = login(client).get(LIST, ANY_TIME)

    assert response.status_code == 200
    assert listed(response) == [world[k].pk for k in ("refused", "held_back", "other_cpo", "rounded", "number_form")]
    content = response.content.decode()
    assert "ConsumedEnergyProgress 12.3456 stored as 12.346" in content
    for key in ("number_form", "held_back", "refused"):
        text = world[key].anomalies[0]["text"]
        assert str(escape(text)) in content, text
    # The received time is local, with its offset, in a <time> element.
    local = timezone.localtime(world["rounded"].received_at)
    assert f'datetime="{local.isoformat()}"' in content
    assert re.search(r"UTC[+-]\d\d:\d\d", row_html(response, world["rounded"]))
    # Each anomaly's label (KINDS) is in the title and read out first.
    assert f'<span class="visually-hidden">{escape(KINDS["rounded"])}: </span>' in content


def escape(text: str) -> str:
    from django.utils.html import escape as html_escape

    return html_escape(text)


def test_counts_for_the_period(client, world):
    response = login(client).get(LIST, ANY_TIME)

    counts = response.context["counts"]
    assert (counts.total, counts.held_back, counts.refused) == (5, 1, 1)
    assert {item.code: item.count for item in counts.by_code} == {
        "rounded": 2,
        "number_form": 1,
        "evse_mismatch": 1,
        "refused": 1,
    }
    assert counts.by_code[0].code == "rounded"  # most frequent first
    content = response.content.decode()
    assert "<strong>5</strong> flagged messages" in content
    assert "<strong>1</strong> held back" in content and "<strong>1</strong> refused by the CDR pull" in content
    assert f"<strong>2</strong> {escape(KINDS['rounded'])}" in content
    # Each code's count links to the list of those messages.
    assert 'href="?period=&amp;code=rounded"' in content
    assert "Counts, all time" in content

    default = login(client).get(LIST)
    assert default.context["counts"].total == 4  # the last 30 days, said in the heading and the select
    assert "Counts, last 30 days (" in default.content.decode()
    assert '<option value="30d" selected>Last 30 days</option>' in default.content.decode()
    assert listed(login(client).get(LIST, {"page": "1"})) == listed(default)  # the pages keep the default

    last_week = login(client).get(LIST, {"period": "7d"}).context["counts"]
    assert (last_week.total, last_week.held_back, last_week.refused) == (3, 1, 1)
    assert {item.code: item.count for item in last_week.by_code} == {"rounded": 1, "evse_mismatch": 1, "refused": 1}


def test_a_message_links_to_its_session_and_a_refused_cdr_without_one_shows_its_id_as_text(client, world):
    response = login(client).get(LIST, ANY_TIME)

    held = row_html(response, world["held_back"])
    session_url = reverse("charging_sessions:session-detail", args=[world["acc"].pk])
    assert f'href="{session_url}"' in held and f"<code>{world['acc'].session_id}</code>" in held
    assert "DE*ACC*E99999*1" in held  # the EvseID the message named, not the session's
    refused = row_html(response, world["refused"])
    assert world["unknown"].lower() in refused
    assert "/sessions/" not in refused and "not a session in the portal" in refused


def test_held_back_and_refused_badges(client, world):
    response = login(client).get(LIST, ANY_TIME)

    assert HELD in row_html(response, world["held_back"]) and REFUSED not in row_html(response, world["held_back"])
    assert REFUSED in row_html(response, world["refused"]) and HELD not in row_html(response, world["refused"])
    assert HELD not in row_html(response, world["rounded"]) and REFUSED not in row_html(response, world["rounded"])


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"period": "today"}, ["refused", "held_back"]),
        ({"period": "7d"}, ["refused", "held_back", "other_cpo"]),
        ({"period": "30d"}, ["refused", "held_back", "other_cpo", "rounded"]),
        ({"date_from": "DAY-25", "date_to": "DAY-15"}, ["rounded"]),
        ({"date_from": "DAY-25"}, ["refused", "held_back", "other_cpo", "rounded"]),
        ({"date_to": "DAY-15"}, ["rounded", "number_form"]),
        ({"kind": "CDR"}, ["refused", "held_back"]),
        ({"kind": "PROGRESS"}, ["other_cpo", "rounded", "number_form"]),
        ({"code": "rounded"}, ["other_cpo", "rounded"]),
        ({"code": "evse_mismatch"}, ["held_back"]),
        ({"code": "cdr_conflict"}, []),
        ({"operator": "nl*fst"}, ["other_cpo"]),
        ({"operator": "DE*ACC"}, ["held_back", "rounded", "number_form"]),
        ({"held_back": "1"}, ["held_back"]),
        ({"refused": "1"}, ["refused"]),
        ({"refused": "on", "period": "today"}, ["refused"]),
        ({"code": "rounded", "operator": "DE*ACC", "kind": "PROGRESS"}, ["rounded"]),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else None,
)
def test_each_filter(client, world, params, expected):
    today = timezone.localdate()
    params = {
        key: (str(today - timedelta(days=int(value[4:]))) if value.startswith("DAY-") else value)
        for key, value in params.items()
    }
    if not {"period", "date_from", "date_to"} & set(params):
        params = {**ANY_TIME, **params}
    response = login(client).get(LIST, params)

    assert response.status_code == 200
    assert not response.context["form"].errors
    assert listed(response) == [world[key].pk for key in expected]
    assert response.context["counts"].total == len(expected)


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"date_to": "9999-12-31"}, "date_to", "Choose a day from 2000-01-01"),
        ({"date_from": "0001-01-01"}, "date_from", "Choose a day from 2000-01-01"),
        ({"date_from": "2026-05-10", "date_to": "2026-05-01"}, "date_to", "“To” is before “From”."),
        ({"date_from": "garbage"}, "date_from", "Enter a valid date."),
        ({"date_to": "2026-02-30"}, "date_to", "Enter a valid date."),
        ({"kind": "BOGUS"}, "kind", "Select a valid choice."),
        ({"code": "nonsense"}, "code", "Select a valid choice."),
        ({"operator": "DE*ACC*E1"}, "operator", "Not an OperatorID"),
        ({"operator": "x" * 500}, "operator", "at most 10 characters"),
        ({"period": "forever"}, "period", "Select a valid choice."),
        ({"period": "7d", "date_from": "2026-01-01"}, "period", "Choose a period or dates, not both"),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else None,
)
def test_bad_filter_input_is_said_next_to_its_field_and_the_rest_still_applies(client, world, params, field, message):
    response = login(client).get(LIST, {**params, "held_back": "1"})

    assert response.status_code == 200
    content = response.content.decode()
    error = re.search(rf'<small id="{field}-error" class="error">([^<]*)</small>', content)
    assert error and message in error.group(1).replace("&ldquo;", "“").replace("&rdquo;", "”").replace("&#x27;", "'")
    assert f'aria-describedby="{field}-error"' in content
    assert "Some filters were not applied" in content
    assert listed(response) == [world["held_back"].pk]  # the valid filter still applies


@pytest.mark.parametrize("page_number", ["garbage", "-1", "0", "999999", "1e9"])
def test_a_bad_page_number_is_never_an_error(client, world, page_number):
    response = login(client).get(LIST, {"page": page_number})
    assert response.status_code == 200


def test_pages_of_fifty_and_queries_do_not_grow_with_the_rows(client, world, django_assert_max_num_queries):
    client = login(client)
    with CaptureQueriesContext(connection) as few:
        assert client.get(LIST, {"operator": "DE*ACC", **ANY_TIME}).status_code == 200
    # Copies of a real flagged message, enough for two pages.
    template = InboundMessage.objects.get(pk=world["rounded"].pk)
    InboundMessage.objects.bulk_create(
        [
            InboundMessage(
                kind=template.kind,
                charging_session=template.charging_session,
                session_id=template.session_id,
                operator_id=template.operator_id,
                received_at=days_ago(1, hour=index % 24),
                raw=template.raw,
                parsed=template.parsed,
                applied_at=template.applied_at,
                anomalies=template.anomalies,
                flagged=True,
            )
            for index in range(70)
        ]
    )
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(LIST, {"operator": "DE*ACC", **ANY_TIME})
    assert len(response.context["rows"]) == 50
    assert response.context["counts"].total == 73
    assert "Page 1 of 2" in response.content.decode()
    with django_assert_max_num_queries(len(few.captured_queries)):
        second = client.get(LIST, {"operator": "DE*ACC", "page": "2", **ANY_TIME})
    assert len(second.context["rows"]) == 23
    assert second.context["rows"][-1]["message"].pk == world["number_form"].pk  # the oldest, last


def test_the_list_does_not_read_the_raw_bodies(client, world):
    client = login(client)
    with CaptureQueriesContext(connection) as queries:
        client.get(LIST)
    listing = [q["sql"] for q in queries.captured_queries if "ORDER BY" in q["sql"] and "inboundmessage" in q["sql"]]
    assert listing and all('."raw"' not in sql for sql in listing)


# --- who sees it -----------------------------------------------------------------------------------


def test_an_agent_gets_403_and_no_nav_link(client, world):
    client = login(client, roles.AGENT)

    assert client.get(LIST).status_code == 403
    assert client.get(reverse("charging_sessions:anomaly-message", args=[world["rounded"].pk])).status_code == 403
    home = client.get(reverse("charging_sessions:session-list"))
    assert home.status_code == 200 and LIST not in home.content.decode()


@pytest.mark.parametrize("role", [roles.SUPERVISOR, roles.ADMIN, roles.AUDITOR])
def test_supervisors_admins_and_auditors_see_it_with_the_nav_link(client, world, role):
    client = login(client, role)

    response = client.get(LIST)
    assert response.status_code == 200
    assert f'<a href="{LIST}" aria-current="page">Anomalies</a>' in response.content.decode()
    home = client.get(reverse("charging_sessions:session-list"))
    assert f'<a href="{LIST}" >Anomalies</a>' in home.content.decode()
    assert client.get(reverse("charging_sessions:anomaly-message", args=[world["refused"].pk])).status_code == 200


def test_anonymous_visitors_are_sent_to_log_in(client, world):
    response = client.get(LIST)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_the_page_is_read_only(client, world):
    assert login(client).post(LIST).status_code == 405


# --- one message as sent ------------------------------------------------------------------------


def test_a_flagged_message_shows_its_body_as_sent_escaped(client, world):
    charging_session = world["acc"]
    body = progress(charging_session.session_id, PartnerProductID="<script>alert(1)</script>" + "x" * 60)
    message = push(client, NOTIFY_URL, body)
    assert message.flagged

    response = login(client).get(
        reverse("charging_sessions:anomaly-message", args=[message.pk]), {"back": "?period=7d"}
    )

    assert response.status_code == 200
    content = response.content.decode()
    assert "<script>alert(1)" not in content
    assert escape(message.raw) in content  # exactly as sent, escaped
    assert "Indented for reading" in content
    assert escape(message.anomalies[0]["text"]) in content
    assert f'href="{LIST}?period=7d"' in content
    assert reverse("charging_sessions:session-detail", args=[charging_session.pk]) in content


def test_a_refused_cdr_shows_its_reason_and_badge(client, world):
    response = login(client).get(reverse("charging_sessions:anomaly-message", args=[world["refused"].pk]))

    content = response.content.decode()
    assert REFUSED in content and "not a session in the portal" in content
    assert escape("EvseID: 'XX' is not an EvseID") in content


@pytest.mark.parametrize("back", ["https://evil.example/", "javascript:alert(1)", "//evil.example"])
def test_the_way_back_stays_on_the_list(client, world, back):
    response = login(client).get(
        reverse("charging_sessions:anomaly-message", args=[world["rounded"].pk]), {"back": back}
    )
    assert f'<a href="{LIST}">← Message anomalies</a>' in response.content.decode()


def test_a_message_that_is_not_flagged_is_not_shown_here(client, world):
    response = login(client).get(reverse("charging_sessions:anomaly-message", args=[world["tidy"].pk]))
    assert response.status_code == 404


# --- the include -----------------------------------------------------------------------------------


def test_the_anomaly_list_include_renders_texts_with_labels():
    from django.template.loader import render_to_string

    from sessions.inbound.selectors import labelled

    html = render_to_string(
        "sessions/_anomaly_list.html",
        {
            "anomalies": labelled(
                [
                    {"code": "evse_mismatch", "field": "EvseID", "text": "EvseID <X> is not the session's"},
                    {"code": "rounded", "field": "ConsumedEnergy", "text": "ConsumedEnergy 1.23456 stored as 1.235"},
                ]
            )
        },
    )
    assert "EvseID &lt;X&gt; is not the session&#x27;s" in html
    assert f'<span class="visually-hidden">{escape(KINDS["evse_mismatch"])}: </span>' in html
    assert 'class="anomaly anomaly-held"' in html and f'title="{escape(KINDS["rounded"])} (ConsumedEnergy)"' in html
    assert render_to_string("sessions/_anomaly_list.html", {"anomalies": []}).strip() == ""


# --- the admin -------------------------------------------------------------------------------------

ADMIN_LIST = reverse("admin:charging_sessions_inboundmessage_changelist")


def admin_pks(response) -> list[int]:
    return sorted(message.pk for message in response.context["cl"].result_list)


def test_admin_change_page_shows_the_anomalies_and_held_back(client, world):
    client = login(client, roles.ADMIN, staff=True)

    response = client.get(reverse("admin:charging_sessions_inboundmessage_change", args=[world["held_back"].pk]))

    assert response.status_code == 200
    content = response.content.decode()
    text = world["held_back"].anomalies[0]["text"]
    assert f"<li>{escape(text)} <small>({escape(KINDS['evse_mismatch'])}; EvseID)</small></li>" in content
    assert re.search(r"Held back:</label>\s*<div class=\"readonly\"><img[^>]*alt=\"True\"", content)


def test_admin_list_has_an_anomalies_column(client, world):
    content = login(client, roles.SUPERVISOR, staff=True).get(ADMIN_LIST).content.decode()
    assert "column-anomaly_summary" in content
    assert escape(world["held_back"].anomalies[0]["text"][:60]) in content


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"flagged__exact": "1"}, ["number_form", "rounded", "other_cpo", "held_back", "refused"]),
        ({"flagged__exact": "0"}, ["tidy"]),
        ({"held_back__exact": "1"}, ["held_back"]),
        ({"anomaly": "rounded"}, ["rounded", "other_cpo"]),
        ({"anomaly": "number_form"}, ["number_form"]),
        ({"anomaly": "refused"}, ["refused"]),
        ({"anomaly": "evse_mismatch", "held_back__exact": "1"}, ["held_back"]),
        ({"anomaly": "cdr_conflict"}, []),
    ],
)
def test_admin_filters(client, world, params, expected):
    response = login(client, roles.AUDITOR, staff=True).get(ADMIN_LIST, params)

    assert response.status_code == 200
    assert admin_pks(response) == sorted(world[key].pk for key in expected)
