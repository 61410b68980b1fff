""" "Verify now": a supervisor queues the audit chain's verification, follows it on the page, sees its
result; the walk is the daily one's and is audited the same way."""

from datetime import timedelta
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions import roles, services, tasks
from sessions.models import AuditRecord, AuditVerification
from tests.factories import UserFactory
from tests.test_audit_chain import TABLE, append, tamper

Event = AuditRecord.EventType
State = AuditVerification.State
VERIFY = reverse("charging_sessions:audit-verify")
STATUS = reverse("charging_sessions:audit-chain-status")
EXPORT_PAGE = reverse("charging_sessions:audit-export")
HISTORY = reverse("charging_sessions:stop-history")
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/audit/export/?period=today"}


@pytest.fixture
def supervisor(db):
    return UserFactory(username="sup-v", role=roles.SUPERVISOR)


@pytest.fixture
def queued(monkeypatch):
    """The broker is outside unit tests: what would be queued, by verification id."""
    sent = []
    monkeypatch.setattr(tasks.verify_audit_chain_requested, "apply_async", lambda args, retry: sent.append(args[0]))
    return sent


def press(client, django_capture_on_commit_callbacks, **extra):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(VERIFY, {"next": EXPORT_PAGE}, **extra)


def test_the_supervisor_verifies_now_and_follows_it_to_the_result(
    client, supervisor, queued, django_capture_on_commit_callbacks
):
    append(4)
    client.force_login(supervisor)
    page = client.get(EXPORT_PAGE).content.decode()
    assert "The audit trail has not been verified yet." in page and ">Verify now</button>" in page
    assert "manage.py verify_audit" in page and "<details" in page  # the shell command: a hint for operators

    fragment = press(client, django_capture_on_commit_callbacks, **HTMX).content.decode()
    verification = AuditVerification.objects.get()
    assert (verification.state, verification.requested_by) == (State.QUEUED, supervisor)
    assert queued == [verification.pk]
    assert "<html" not in fragment and "Verifying the audit trail…" in fragment
    assert 'hx-trigger="every 2s"' in fragment and "disabled" in fragment and "waiting for a worker" in fragment
    assert 'name="next" value="/audit/export/?period=today"' in fragment

    tasks.verify_audit_chain_requested(verification.pk)  # what the worker runs
    verification.refresh_from_db()
    assert (verification.state, verification.ok, verification.records_checked) == (State.DONE, True, 4)
    assert verification.started_at and verification.finished_at
    audit = AuditRecord.objects.get(event_type=Event.AUDIT_VERIFIED)
    assert audit.actor == supervisor and audit.data["verification_id"] == verification.pk
    assert audit.data["ok"] is True and audit.data["records_checked"] == 4 and audit.data["requested_at"]

    done = client.get(STATUS, **HTMX).content.decode()
    assert "✓ Audit trail intact" in done and "4 records checked" in done and "on request of sup-v" in done
    assert "every 2s" not in done and 'data-state="INTACT"' in done
    tasks.verify_audit_chain_requested(verification.pk)  # a redelivered message changes nothing
    assert AuditRecord.objects.filter(event_type=Event.AUDIT_VERIFIED).count() == 1


def test_a_broken_chain_is_shown_with_the_record_where_it_breaks(
    client, supervisor, queued, django_capture_on_commit_callbacks
):
    records = append(5)
    tamper(f"UPDATE {TABLE} SET data = %s WHERE id = %s", ['{"i":99}', records[2].pk])
    client.force_login(supervisor)
    press(client, django_capture_on_commit_callbacks, **HTMX)
    tasks.verify_audit_chain_requested(queued[0])
    fragment = client.get(STATUS, **HTMX).content.decode()
    assert f"✕ Audit trail BROKEN at record {records[2].pk}" in fragment and 'data-state="BROKEN"' in fragment
    assert "edited" in fragment  # what the walk found, in its words
    assert AuditRecord.objects.filter(event_type=Event.AUDIT_VERIFIED).latest("id").data["ok"] is False


def test_a_second_press_follows_the_walk_already_queued(client, supervisor, queued, django_capture_on_commit_callbacks):
    client.force_login(supervisor)
    press(client, django_capture_on_commit_callbacks, **HTMX)
    press(client, django_capture_on_commit_callbacks, **HTMX)
    assert AuditVerification.objects.count() == 1 and len(queued) == 1


def test_without_a_broker_the_page_says_it_did_not_run(client, supervisor, django_capture_on_commit_callbacks):
    client.force_login(supervisor)
    with mock.patch.object(tasks.verify_audit_chain_requested, "apply_async", side_effect=ConnectionError("no redis")):
        press(client, django_capture_on_commit_callbacks, **HTMX)
    verification = AuditVerification.objects.get()
    assert verification.state == State.FAILED and "no redis" in verification.error
    fragment = client.get(STATUS, **HTMX).content.decode()
    assert "did not run: Could not queue the job: no redis" in fragment and "every 2s" not in fragment
    assert ">Verify now</button>" in fragment and "disabled" not in fragment  # it can be asked for again
    assert not AuditRecord.objects.filter(event_type=Event.AUDIT_VERIFIED).exists()


def test_a_request_no_worker_finished_is_given_up_and_a_new_one_queued(
    client, supervisor, queued, django_capture_on_commit_callbacks
):
    client.force_login(supervisor)
    press(client, django_capture_on_commit_callbacks, **HTMX)
    stale = AuditVerification.objects.get()
    AuditVerification.objects.filter(pk=stale.pk).update(requested_at=timezone.now() - timedelta(hours=1))
    press(client, django_capture_on_commit_callbacks, **HTMX)
    stale.refresh_from_db()
    assert stale.state == State.FAILED and "No worker finished it within 30 minutes" in stale.error
    assert AuditVerification.objects.filter(state=State.QUEUED).count() == 1 and len(queued) == 2


def test_without_javascript_the_form_leads_back_to_the_page(
    client, supervisor, queued, django_capture_on_commit_callbacks
):
    client.force_login(supervisor)
    response = press(client, django_capture_on_commit_callbacks)
    assert response.status_code == 302 and response["Location"] == EXPORT_PAGE
    with django_capture_on_commit_callbacks(execute=True):
        elsewhere = client.post(VERIFY, {"next": "https://evil.example/"})
    assert elsewhere["Location"] == EXPORT_PAGE  # never off the site


def test_the_daily_verification_is_shown_as_such(client, supervisor):
    append(2)
    services.verify_audit_chain()
    client.force_login(supervisor)
    content = client.get(EXPORT_PAGE).content.decode()
    assert "✓ Audit trail intact" in content and "by the daily check" in content and "2 records checked" in content


@pytest.mark.parametrize(
    "role, can_see, can_verify",
    [
        (roles.AGENT, False, False),
        (roles.ADMIN, True, False),
        (roles.SUPERVISOR, True, True),
        (roles.AUDITOR, True, True),
    ],
)
def test_who_may_see_the_chain_and_who_may_verify(
    client, db, queued, django_capture_on_commit_callbacks, role, can_see, can_verify
):
    client.force_login(UserFactory(username=f"v-{role}".replace(" ", "-"), role=role))
    assert client.get(STATUS, **HTMX).status_code == (200 if can_see else 403)
    assert press(client, django_capture_on_commit_callbacks, **HTMX).status_code == (200 if can_verify else 403)
    assert AuditVerification.objects.exists() is can_verify
    if can_see:
        services.verify_audit_chain()
        history = client.get(HISTORY).content.decode()
        assert "Audit trail intact" in history and (">Verify now</button>" in history) is can_verify


def test_anonymous_visitors_are_sent_to_log_in(client, db):
    assert client.post(VERIFY)["Location"].startswith(reverse("login"))
    assert client.get(STATUS)["Location"].startswith(reverse("login"))
