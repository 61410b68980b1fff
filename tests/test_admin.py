"""The Django admin: the stop action (delete_selected's shape) and read-only records."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import models
from django.urls import reverse
from django.utils import timezone

from sessions import roles
from sessions.admin import ChargingSessionAdmin
from sessions.models import AuditRecord, ChargingSession, RemoteStopRequest, StopReason
from sessions.stops.forms import ids_param, parse_ids
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory, UserFactory

pytestmark = pytest.mark.usefixtures("no_broker")
CHANGELIST = reverse("admin:charging_sessions_chargingsession_changelist")
HISTORY = reverse("charging_sessions:stop-history")


@pytest.fixture
def admin_client_for(client, db):
    def login(role):
        user = UserFactory(username=f"staff-{role}", role=role)
        user.is_staff = True
        user.save()
        client.force_login(user)
        return client

    return login


def action(pks, **extra):
    return {"action": "stop_selected_sessions", ACTION_CHECKBOX_NAME: [str(pk) for pk in pks], **extra}


def test_action_asks_for_confirmation_listing_the_sessions(admin_client_for):
    client = admin_client_for(roles.ADMIN)
    first, second = (
        ChargingSessionFactory(),
        ChargingSessionFactory(status=ChargingSession.Status.CLOSED, ended_at=timezone.now()),
    )
    response = client.post(CHANGELIST, action([first.pk, second.pk]))
    content = response.content.decode()
    assert response.status_code == 200
    assert first.evse_id in content and second.evse_id in content
    assert "Will not be sent" in content and "Send 1 stop to Hubject" in content
    assert not RemoteStopRequest.objects.exists()


def test_confirmed_action_stops_eligible_sessions_through_the_service(admin_client_for):
    client = admin_client_for(roles.ADMIN)
    sessions = [ChargingSessionFactory() for _ in range(2)]
    busy = ChargingSessionFactory()
    RemoteStopRequestFactory(charging_session=busy)
    response = client.post(
        CHANGELIST,
        action(
            [cs.pk for cs in [*sessions, busy]], post="yes", reason=StopReason.DUPLICATE_SESSION, case_reference="C-1"
        ),
        follow=True,
    )
    assert response.status_code == 200
    created = RemoteStopRequest.objects.filter(reason=StopReason.DUPLICATE_SESSION)
    assert sorted(created.values_list("charging_session", flat=True)) == sorted(cs.pk for cs in sessions)
    assert AuditRecord.objects.filter(event_type=AuditRecord.EventType.STOP_REQUESTED).count() == 2
    messages = [str(m) for m in response.context["messages"]]
    assert any("2 stops queued" in m for m in messages)
    assert any(busy.evse_id in m and "still open" in m for m in messages)


def test_confirmation_without_reason_changes_nothing(admin_client_for):
    client = admin_client_for(roles.ADMIN)
    charging_session = ChargingSessionFactory()
    response = client.post(CHANGELIST, action([charging_session.pk], post="yes", reason=""))
    assert response.status_code == 200 and "Choose a reason" in response.content.decode()
    assert not RemoteStopRequest.objects.exists()


def test_auditor_has_no_stop_action(admin_client_for):
    client = admin_client_for(roles.AUDITOR)
    charging_session = ChargingSessionFactory()
    page = client.get(CHANGELIST)
    assert page.status_code == 200 and b"stop_selected_sessions" not in page.content
    client.post(CHANGELIST, action([charging_session.pk], post="yes", reason=StopReason.DRIVER_ASKED))
    assert not RemoteStopRequest.objects.exists()


@pytest.mark.parametrize("model", ["chargingsession", "remotestoprequest", "auditrecord"])
def test_records_are_read_only_even_for_superusers(client, db, model):
    superuser = UserFactory(username="root")
    superuser.is_superuser = superuser.is_staff = True
    superuser.save()
    client.force_login(superuser)
    stop = RemoteStopRequestFactory()
    record = AuditRecord.objects.create(event_type="STOP_REQUESTED", occurred_at=timezone.now(), stop_request=stop)
    obj = {"chargingsession": stop.charging_session, "remotestoprequest": stop, "auditrecord": record}[model]
    assert client.get(reverse(f"admin:charging_sessions_{model}_changelist")).status_code == 200
    assert client.get(reverse(f"admin:charging_sessions_{model}_add")).status_code == 403
    assert client.get(reverse(f"admin:charging_sessions_{model}_delete", args=[obj.pk])).status_code == 403
    change = client.post(reverse(f"admin:charging_sessions_{model}_change", args=[obj.pk]), {})
    assert change.status_code == 403


def test_an_audit_record_page_shows_its_data_as_json(admin_client_for):
    from sessions import services

    record = services.record_audit(
        event_type=AuditRecord.EventType.SESSION_UPDATED,
        data={"note": "Kabel <steckt>", "ok": None, "nested": {"b": 1, "a": True}},
    )
    client = admin_client_for(roles.ADMIN)
    page = client.get(reverse("admin:charging_sessions_auditrecord_change", args=[record.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "&quot;ok&quot;: null" in html and "&quot;a&quot;: true" in html  # JSON, not a Python dict
    assert "Kabel &lt;steckt&gt;" in html  # escaped


# --- an admin fit for bulk stops: environment badge, local times, the confirmation, the outcomes link ---


def _superuser_client(client):
    superuser = UserFactory(username="root-admin")
    superuser.is_superuser = superuser.is_staff = True
    superuser.save()
    client.force_login(superuser)
    return client, superuser


@pytest.fixture
def production(settings):
    settings.PORTAL_ENVIRONMENT = "PRODUCTION"
    settings.TIME_ZONE = "Europe/Berlin"


def _badge(html: str) -> bool:
    return 'class="env env-production"' in html and ">PRODUCTION</span>" in html


def test_every_admin_page_shows_the_environment_badge(client, db, production):
    stop = RemoteStopRequestFactory()
    assert _badge(client.get(reverse("admin:login")).content.decode())  # before logging in, too
    client, _ = _superuser_client(client)
    pages = [
        reverse("admin:index"),
        reverse("admin:app_list", args=["charging_sessions"]),
        reverse("admin:charging_sessions_chargingsession_change", args=[stop.charging_session.pk]),
        reverse("admin:charging_sessions_remotestoprequest_change", args=[stop.pk]),
    ]
    pages += [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist") for model in admin.site._registry
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert _badge(html), url
        assert "production" in html.split("<body", 1)[1].split(">", 1)[0], f"{url}: PRODUCTION marks the page itself"


def test_the_admin_badge_has_the_portal_badges_colours():
    def colours(path):
        css = (settings.BASE_DIR / path).read_text()
        return dict(re.findall(r"\.env-(sandbox|qa|production)\s*\{\s*background:\s*(#[0-9a-fA-F]+)", css))

    portal = colours("static/portal/portal.css")
    assert set(portal) == {"sandbox", "qa", "production"}
    assert colours("static/portal/admin.css") == portal


def test_admin_lists_and_records_show_local_times_with_their_utc_offset(admin_client_for, production):
    started = datetime(2026, 12, 6, 20, 2, 13, tzinfo=UTC)
    stop = RemoteStopRequestFactory(charging_session=ChargingSessionFactory(started_at=started), requested_at=started)
    client = admin_client_for(roles.ADMIN)
    for url in (
        CHANGELIST,
        reverse("admin:charging_sessions_remotestoprequest_changelist"),
        reverse("admin:charging_sessions_chargingsession_change", args=[stop.charging_session.pk]),
        reverse("admin:charging_sessions_remotestoprequest_change", args=[stop.pk]),
    ):
        html = client.get(url).content.decode()
        assert '<time datetime="2026-12-06T21:02:13+01:00"' in html and "2026-12-06 21:02:13 +01:00" in html, url
        assert "p.m." not in html and "a.m." not in html, url


def test_local_times_are_sortable_by_their_field(admin_client_for):
    early = ChargingSessionFactory(started_at=timezone.now() - timedelta(hours=5))
    late = ChargingSessionFactory(started_at=timezone.now() - timedelta(hours=1))
    client = admin_client_for(roles.ADMIN)
    column = ChargingSessionAdmin.list_display.index("started_at") + 1
    html = client.get(CHANGELIST, {"o": str(column)}).content.decode()
    assert html.index(early.session_id) < html.index(late.session_id)
    html = client.get(CHANGELIST, {"o": f"-{column}"}).content.decode()
    assert html.index(late.session_id) < html.index(early.session_id)


def test_no_admin_list_or_record_shows_a_raw_datetime(rf, db):
    """Every ModelAdmin, Django's and the apps' included, goes through the one local-time display."""
    request = rf.get("/admin/")
    request.user = UserFactory(username="root-check")
    request.user.is_superuser = request.user.is_staff = True
    for model, model_admin in admin.site._registry.items():
        datetimes = {f.name for f in model._meta.concrete_fields if isinstance(f, models.DateTimeField)}
        shown = [name for name in model_admin.get_list_display(request) if isinstance(name, str)]
        assert not datetimes & set(shown), f"{model.__name__} lists raw datetimes: {datetimes & set(shown)}"


def test_bulk_confirmation_is_destructive_and_names_the_environment(admin_client_for, production):
    client = admin_client_for(roles.ADMIN)
    first = ChargingSessionFactory(evse_id="DE*ACC*E7001*1")
    second = ChargingSessionFactory(evse_id="DE*ACC*E7002*1")
    closed = ChargingSessionFactory(
        evse_id="NL*FST*E7003*1", status=ChargingSession.Status.CLOSED, ended_at=timezone.now()
    )
    busy = ChargingSessionFactory(evse_id="DE*SLW*E7004*1")
    RemoteStopRequestFactory(charging_session=busy)
    html = client.post(CHANGELIST, action([first.pk, second.pk, closed.pk, busy.pk])).content.decode()
    assert _badge(html)
    assert re.search(
        r'<button type="submit"[^>]*class="[^"]*danger[^"]*"[^>]*>\s*Send 2 stops to Hubject PRODUCTION\s*<', html
    ), "the red primary button names the count and the environment"
    for charging_session in (first, second, closed, busy):
        assert charging_session.evse_id in html and charging_session.operator_id in html
    assert "2 sessions cannot be stopped" in html
    assert "The session has ended" in html and "is still open" in html  # why, from stop_blocker
    assert re.search(r'<select name="reason"[^>]*required', html), "the reason is required, as in the agent's dialog"


def test_bulk_confirmation_with_one_session_says_stop(admin_client_for, production):
    client = admin_client_for(roles.ADMIN)
    html = client.post(CHANGELIST, action([ChargingSessionFactory().pk])).content.decode()
    assert "Send 1 stop to Hubject PRODUCTION" in html


def test_bulk_confirmation_with_nothing_to_send_disables_the_button(admin_client_for, production):
    client = admin_client_for(roles.ADMIN)
    closed = ChargingSessionFactory(status=ChargingSession.Status.CLOSED, ended_at=timezone.now())
    html = client.post(CHANGELIST, action([closed.pk])).content.decode()
    assert re.search(r"<button[^>]*disabled[^>]*>\s*Send 0 stops to Hubject PRODUCTION", html)
    assert "None of the selected sessions can be stopped" in html


def test_after_sending_the_message_links_to_the_history_of_exactly_those_requests(admin_client_for, production):
    client = admin_client_for(roles.ADMIN)
    sessions = [ChargingSessionFactory() for _ in range(3)]
    earlier = RemoteStopRequestFactory(state=RemoteStopRequest.State.FAILED)  # not part of this action
    response = client.post(
        CHANGELIST, action([cs.pk for cs in sessions], post="yes", reason=StopReason.DRIVER_ASKED), follow=True
    )
    created = sorted(RemoteStopRequest.objects.exclude(pk=earlier.pk).values_list("pk", flat=True))
    assert len(created) == 3
    html = response.content.decode()
    assert "3 stops queued for Hubject PRODUCTION" in html
    link = re.search(r'<a href="(' + re.escape(HISTORY) + r'\?ids=[^"]*)"', html)
    assert link, html
    history = client.get(link.group(1).replace("&amp;", "&"))
    shown = [stop.pk for stop, _ in history.context["rows"]]
    assert sorted(shown) == created
    assert "3 selected requests" in history.content.decode()


def test_history_ids_filter_selects_exactly_those_requests(admin_client_for):
    client = admin_client_for(roles.ADMIN)
    stops = [RemoteStopRequestFactory() for _ in range(5)]
    pks = [stop.pk for stop in stops]
    for value, expected in [
        (f"{pks[0]},{pks[2]}", {pks[0], pks[2]}),
        (f" {pks[3]} , {pks[1]} ,", {pks[1], pks[3]}),
        (f"{pks[1]}-{pks[3]}", set(pks[1:4])),
        (f"{pks[0]},{pks[2]}-{pks[4]}", {pks[0], *pks[2:]}),
    ]:
        response = client.get(HISTORY, {"ids": value})
        assert {stop.pk for stop, _ in response.context["rows"]} == expected, value
        assert f"{len(expected)} selected request" in response.content.decode()


def test_history_ids_filter_is_a_removable_chip_kept_by_the_other_filters(admin_client_for):
    client = admin_client_for(roles.ADMIN)
    stops = [RemoteStopRequestFactory() for _ in range(3)]
    ids = f"{stops[0].pk},{stops[1].pk},{stops[2].pk}"
    html = client.get(HISTORY, {"ids": ids, "state": "PENDING", "sort": "agent"}).content.decode()
    chip = re.search(
        r'<a [^>]*class="chip-remove"[^>]*href="([^"]*)"|<a [^>]*href="([^"]*)"[^>]*class="chip-remove"', html
    )
    assert chip and "3 selected requests" in html
    remove = (chip.group(1) or chip.group(2)).replace("&amp;", "&")
    assert "ids=" not in remove and "state=PENDING" in remove and "sort=agent" in remove
    assert f'<input type="hidden" name="ids" value="{ids}">' in html  # "Apply" keeps the selection


@pytest.mark.parametrize("value", ["abc", "12;13", "-3", "5-2", "1-100000", ",".join(str(n) for n in range(1, 1100))])
def test_history_ids_filter_refuses_bad_or_too_many_ids_with_a_clear_error(admin_client_for, value):
    client = admin_client_for(roles.ADMIN)
    RemoteStopRequestFactory()
    response = client.get(HISTORY, {"ids": value})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="ids-error"' in html
    assert not response.context["rows"], "a bad selection shows nothing rather than everything"


def test_history_ids_filter_never_widens_what_an_agent_may_see(client, db):
    agent = UserFactory(username="agent-ids", role=roles.AGENT)
    own, other = RemoteStopRequestFactory(requested_by=agent), RemoteStopRequestFactory()
    client.force_login(agent)
    response = client.get(HISTORY, {"ids": f"{own.pk},{other.pk}"})
    assert [stop.pk for stop, _ in response.context["rows"]] == [own.pk]


@pytest.mark.parametrize(
    "ids, expected", [([3], "3"), ([3, 4], "3,4"), ([5, 3, 4], "3-5"), ([1, 2, 3, 7, 9, 10, 11], "1-3,7,9-11")]
)
def test_ids_param_is_compact_and_parses_back(ids, expected):
    assert ids_param(ids) == expected
    assert parse_ids(expected) == sorted(set(ids))


def test_a_missing_time_shows_as_empty_not_none(admin_client_for):
    stop = RemoteStopRequestFactory()  # never sent: first_sent_at is None
    client = admin_client_for(roles.ADMIN)
    html = client.get(reverse("admin:charging_sessions_remotestoprequest_change", args=[stop.pk])).content.decode()
    shown = re.search(r'field-first_sent_at_local.*?<div class="readonly">(.*?)</div>', html, re.S)
    assert shown and shown.group(1).strip() == "-"
    assert ">None<" not in html


def test_every_listed_id_column_is_monospaced_and_never_wraps():
    """An ID column added to an admin list must get admin.css's nowrap/monospace rule too."""
    css = (settings.BASE_DIR / "static/portal/admin.css").read_text()
    id_like = re.compile(r"(_id|_uid|hash|sha256|_number)$|^charging_session$")
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "charging_sessions":
            continue
        for name in model_admin.list_display:
            if isinstance(name, str) and id_like.search(name) and name not in ("first_broken_id", "last_purged_id"):
                assert f".field-{name}" in css, f"{model.__name__}.{name}"


def test_admin_lists_have_no_nameless_links_or_landmarks(admin_client_for):
    """axe's findings in Django's admin templates: the date links' <nav> has a name, and a blank
    value (an inbound message without OperatorID) is a named filter link, not an empty one."""
    from sessions.models import InboundMessage

    InboundMessage.objects.create(
        kind=InboundMessage.Kind.END, session_id="x", operator_id="", received_at=timezone.now(), raw="{}"
    )
    client = admin_client_for(roles.ADMIN)
    html = client.get(reverse("admin:charging_sessions_inboundmessage_changelist")).content.decode()
    assert '<nav class="toplinks" aria-label="Dates">' in html
    assert re.search(r'<a href="\?operator_id=">\(blank\)</a>', html), "the empty OperatorID gets a name"
    nameless = [a for a in re.findall(r"<a [^>]*>\s*</a>", html) if "title=" not in a and "aria-label=" not in a]
    assert not nameless
