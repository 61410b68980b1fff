"""Every one of Hubject's published samples is accepted (DIGEST §9), read from Hubject's own files.

The notification samples of both code-snippet files (EMP and CPO), the CDR push sample and the CDR
pull answer are posted or parsed as printed; only the CDR's placeholder `"SessionID": "string"`
is filled in with a real GUID. They carry a hub operator (OperatorID DE*ABC) beside EvseIDs of its
sub-operator DE*XYZ, Hubject's "Connector Error" spelling and Eichrecht fields.
"""

from __future__ import annotations

import json

import pytest

from sessions import services
from sessions.models import ChargeDetailRecord, ChargingSession, InboundMessage
from sessions.oicp import ids, inbound
from tests.spec_files import code_snippets

NOTIFY_URL = "/api/oicp/notificationmgmt/v11/charging-notifications"
SNIPPET_FILES = ("asciidoc/06_EMP_Code_Snippets.asciidoc", "asciidoc/06_CPO_Code_Snippets.asciidoc")
NOTIFICATIONS = ("Start", "Progress", "End", "Error")
SESSION_ID = "b2688a31-7c35-4c1f-9b8d-d4e4d3d3a7e1"


def request_sample(file: str, section: str) -> str:
    return code_snippets(file)[section][0]


def cdr_sample(text: str) -> str:
    # The one placeholder: "string" stands for a Hubject SessionID (a GUID).
    assert text.count('"SessionID": "string"') == 1
    return text.replace('"SessionID": "string"', f'"SessionID": "{SESSION_ID}"')


def post(client, url: str, body: str):
    return client.post(url, data=body, content_type="application/json")


def assert_accepted(response) -> dict:
    assert response.status_code == 200, response.content
    ack = json.loads(response.content)
    assert ack["Result"] is True and ack["StatusCode"]["Code"] == "000", ack
    return ack


@pytest.mark.django_db
@pytest.mark.parametrize("file", SNIPPET_FILES)
@pytest.mark.parametrize("kind", NOTIFICATIONS)
def test_each_notification_sample_is_accepted_as_printed(client, file, kind):
    body = request_sample(file, f"eRoamingChargingNotification{kind}")

    ack = assert_accepted(post(client, NOTIFY_URL, body))

    sample = json.loads(body)
    assert ack["SessionID"] == sample["SessionID"]
    message = InboundMessage.objects.get()
    assert message.raw == body and message.apply_error == "" and not message.held_back
    assert ChargingSession.objects.get().session_id == sample["SessionID"]


@pytest.mark.django_db
@pytest.mark.parametrize("file", SNIPPET_FILES)
def test_the_notification_samples_in_order_follow_one_session(client, file):
    for kind in NOTIFICATIONS:
        assert_accepted(post(client, NOTIFY_URL, request_sample(file, f"eRoamingChargingNotification{kind}")))

    charging_session = ChargingSession.objects.get()
    assert charging_session.status == ChargingSession.Status.CHARGING_ENDED
    assert charging_session.last_error_type == "ConnectorError"  # Hubject prints "Connector Error"
    assert not InboundMessage.objects.filter(held_back=True).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("path_operator", ["DE*ABC", "DE*XYZ"])  # the hub operator, or the EvseID's operator
def test_the_cdr_sample_is_accepted_with_its_eichrecht_fields(client, path_operator):
    body = cdr_sample(request_sample("asciidoc/06_CPO_Code_Snippets.asciidoc", "eRoamingChargeDetailRecord"))

    assert_accepted(post(client, f"/api/oicp/cdrmgmt/v22/operators/{path_operator}/charge-detail-record", body))

    cdr = ChargeDetailRecord.objects.get()
    assert cdr.session_id == SESSION_ID and cdr.charging_session.status == ChargingSession.Status.CLOSED
    assert len(cdr.data["SignedMeteringValues"]) == 2
    assert cdr.data["CalibrationLawVerificationInfo"]["CalibrationLawCertificateID"] == "CD-12BD-2783T"
    assert InboundMessage.objects.get().anomalies == []


@pytest.mark.django_db
def test_the_cdr_sample_after_the_notification_samples_closes_their_session(client):
    file = SNIPPET_FILES[0]
    start = request_sample(file, "eRoamingChargingNotificationStart")
    session_id = json.loads(start)["SessionID"]
    assert_accepted(post(client, NOTIFY_URL, start))
    body = cdr_sample(request_sample("asciidoc/06_CPO_Code_Snippets.asciidoc", "eRoamingChargeDetailRecord"))

    assert_accepted(
        post(
            client,
            "/api/oicp/cdrmgmt/v22/operators/DE*ABC/charge-detail-record",
            body.replace(SESSION_ID, session_id.upper()),
        )
    )

    charging_session = ChargingSession.objects.get()
    assert charging_session.status == ChargingSession.Status.CLOSED
    assert charging_session.session_id == session_id  # kept as first received


def test_the_cdr_pull_answer_sample_parses_record_by_record():
    answer = json.loads(
        cdr_sample(code_snippets(SNIPPET_FILES[0])["eRoamingGetChargeDetailRecord"][1]),
        parse_float=__import__("decimal").Decimal,
    )

    records = [inbound.charge_detail_record_from_dict(record) for record in answer["content"]]

    assert [record.session_id for record in records] == [SESSION_ID]
    assert records[0].operator_id == "DE*XYZ" and records[0].hub_operator_id == "DE*ABC"


def test_the_remote_stop_request_sample_is_what_the_portal_sends():
    sample = json.loads(code_snippets(SNIPPET_FILES[0])["eRoamingAuthorizeRemoteStop"][0])

    assert ids.remote_stop_violations(sample) == []


@pytest.mark.django_db
@pytest.mark.parametrize("file", SNIPPET_FILES)
def test_the_samples_queued_for_the_workers_are_applied_as_one_batch(client, file, worker_mode, settings, caplog):
    """The worker's set-based path (sessions/inbound/services/batch.py) takes Hubject's own samples
    as they are, with no fall-back to one by one: the notifications, then the CDR, of one session."""
    settings.OICP_INBOUND_BURST_RATE = 0
    session_id = json.loads(request_sample(file, "eRoamingChargingNotificationStart"))["SessionID"]
    for kind in NOTIFICATIONS:
        assert_accepted(post(client, NOTIFY_URL, request_sample(file, f"eRoamingChargingNotification{kind}")))
    cdr = cdr_sample(request_sample("asciidoc/06_CPO_Code_Snippets.asciidoc", "eRoamingChargeDetailRecord"))
    assert_accepted(
        post(client, "/api/oicp/cdrmgmt/v22/operators/DE*ABC/charge-detail-record", cdr.replace(SESSION_ID, session_id))
    )
    assert not ChargingSession.objects.exists()  # queued, not applied yet

    with caplog.at_level("INFO", logger="sessions.inbound.applying"):
        assert services.apply_inbound_messages() == 5
    assert "applied one by one" not in caplog.text
    charging_session = ChargingSession.objects.get()
    assert charging_session.status == ChargingSession.Status.CLOSED
    assert charging_session.last_error_type == "ConnectorError"
    assert charging_session.cdr.data["CalibrationLawVerificationInfo"]["CalibrationLawCertificateID"] == "CD-12BD-2783T"
    assert not InboundMessage.objects.filter(held_back=True).exists()
    assert InboundMessage.objects.filter(applied_at__isnull=False).count() == 5
