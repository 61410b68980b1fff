"""The inbound OICP endpoints: ChargingNotification and ChargeDetailRecord pushed by Hubject.

Samples are Hubject's own (the `example:` blocks of the EMP OpenAPI, DIGEST §7), copied here so
these tests run without ../shared; one test also posts the examples straight from the file.
"""

from __future__ import annotations

import copy
import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client
from django.utils import timezone

from sessions import services
from sessions.models import (
    AuditRecord,
    ChargeDetailRecord,
    ChargingSession,
    InboundMessage,
    InboundRefusalCount,
    RemoteStopRequest,
)
from sessions.oicp import inbound
from sessions.oicp.fields import nesting_exceeds
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory
from tests.spec_files import spec_file

NOTIFY_URL = "/api/oicp/notificationmgmt/v11/charging-notifications"
SID = "f98efba4-02d8-4fa0-b810-9a9d50d2c527"
Event = AuditRecord.EventType
State = RemoteStopRequest.State


def cdr_url(operator_id: str = "DE*XYZ") -> str:
    return f"/api/oicp/cdrmgmt/v22/operators/{operator_id}/charge-detail-record"


# --- Hubject's samples (OpenAPI examples) ----------------------------------------------------

IDENT = {"RFIDMifareFamilyIdentification": {"UID": "1234ABCD"}}
START = {
    "Type": "Start",
    "CPOPartnerSessionID": "1234XYZ",
    "EMPPartnerSessionID": "2345ABC",
    "ChargingStart": "2020-09-23T14:17:53.038Z",
    "EvseID": "DE*XYZ*ETEST1",
    "Identification": IDENT,
    "MeterValueStart": 0,
    "PartnerProductID": "AC 1",
    "SessionID": SID,
    "SessionStart": "2020-09-23T14:17:53.038Z",
    "OperatorID": "DE*ABC",
}
PROGRESS = {
    "Type": "Progress",
    "CPOPartnerSessionID": "1234XYZ",
    "EMPPartnerSessionID": "2345ABC",
    "ChargingStart": "2020-09-23T14:17:53.038Z",
    "EventOccurred": "2020-09-23T14:25:53.038Z",
    "ChargingDuration": 48000,
    "ConsumedEnergyProgress": 9,
    "EvseID": "DE*XYZ*ETEST1",
    "Identification": IDENT,
    "MeterValueStart": 0,
    "MeterValueInBetween": {"meterValues": [9]},
    "PartnerProductID": "AC 1",
    "SessionID": SID,
    "SessionStart": "2020-09-23T14:17:53.038Z",
    "OperatorID": "DE*ABC",
}
END = {
    "Type": "End",
    "CPOPartnerSessionID": "1234XYZ",
    "ChargingEnd": "2020-09-23T14:17:53.038Z",
    "ChargingStart": "2020-09-23T14:50:53.038Z",
    "ConsumedEnergy": 10,
    "EMPPartnerSessionID": "2345ABC",
    "EvseID": "DE*XYZ*ETEST1",
    "Identification": IDENT,
    "MeterValueStart": 0,
    "MeterValueEnd": 10,
    "MeterValueInBetween": {"meterValues": [0]},
    "PartnerProductID": "AC 1",
    "PenaltyTimeStart": "2020-09-23T14:17:53.038Z",
    "OperatorID": "DE*ABC",
    "SessionID": SID,
    "SessionEnd": "2020-09-23T14:50:53.038Z",
    "SessionStart": "2020-09-23T14:17:53.038Z",
}
ERROR = {
    "CPOPartnerSessionID": "1234XYZ",
    "EMPPartnerSessionID": "2345ABC",
    "EvseID": "DE*XYZ*ETEST1",
    "ErrorType": "ConnectorError",
    "ErrorAdditionalInfo": "Plug was not connected, EVSEID timed out reached",
    "Identification": IDENT,
    "OperatorID": "DE*ABC",
    "SessionID": SID,
    "Type": "Error",
}
CDR = {
    "CalibrationLawVerificationInfo": {
        "CalibrationLawCertificateID": "CD-12BD-2783T",
        "PublicKey": "a9sdh839alskldh/WEDjaskdjis20ij2wdpasodpjlkofi3ed3ed",
        "MeteringSignatureUrl": "http://www.meteringexample1234.com",
        "MeteringSignatureEncodingFormat": "UTF-8",
        "SignedMeteringValuesVerificationInstruction": "please follow instructions provided in the mentioned URL",
    },
    "CPOPartnerSessionID": "1234XYZ",
    "ChargingEnd": "2020-09-23T14:17:53.038Z",
    "ChargingStart": "2020-09-23T14:17:53.038Z",
    "ConsumedEnergy": 10,
    "EMPPartnerSessionID": "9876655",
    "EvseID": "DE*XYZ*ETEST1",
    "HubOperatorID": "DE*ABC",
    "HubProviderID": "DE-DCB",
    "Identification": {
        "PlugAndChargeIdentification": {"EvcoID": "DE-DCB-C12345678-X"},
        "RemoteIdentification": {"EvcoID": "DE-DCB-C12345678-X"},
        "RFIDMifareFamilyIdentification": {"UID": "1234ABCD"},
    },
    "MeterValueEnd": 10,
    "MeterValueInBetween": {"meterValues": [10]},
    "MeterValueStart": 0,
    "SignedMeteringValues": [
        {"SignedMeteringValue": "AAAAAAAAAAAAAAABasdno2e89d2ekasdeBBBBBBBBBBBBBBBB", "MeteringStatus": "Start"},
        {"SignedMeteringValue": "AAAAAAAAAAAAAAABBBBdaskjhadksiqwd2309nede9owineBB", "MeteringStatus": "End"},
    ],
    "PartnerProductID": "AC 1",
    "SessionEnd": "2020-09-23T14:17:53.039Z",
    "SessionID": SID,
    "SessionStart": "2020-09-23T14:17:53.039Z",
}


def msg(sample: dict, **changes) -> dict:
    """A copy of a sample with fields changed; a value of ... removes the field."""
    body = copy.deepcopy(sample)
    for name, value in changes.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def post(client: Client, url: str, body, **extra):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **extra)


def assert_ack(response, *, result: bool, code: str, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json;charset=UTF-8"
    ack = json.loads(response.content)
    assert set(ack) == {"Result", "StatusCode", "SessionID", "CPOPartnerSessionID", "EMPPartnerSessionID"}
    assert ack["Result"] is result
    assert set(ack["StatusCode"]) == {"Code", "Description", "AdditionalInfo"}
    assert ack["StatusCode"]["Code"] == code
    return ack


def database_state() -> dict:
    """Row counts of every model, and every session's fields: what a refused message must not change."""
    state = {model._meta.label: model.objects.count() for model in apps.get_models()}
    state["sessions"] = list(ChargingSession.objects.order_by("pk").values())
    state["stops"] = list(RemoteStopRequest.objects.order_by("pk").values())
    return state


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- accepted messages -------------------------------------------------------------------------


@pytest.mark.django_db
def test_start_sample_creates_the_session(client):
    response = post(client, NOTIFY_URL, START)

    ack = assert_ack(response, result=True, code="000", status=200)
    assert ack == {
        "Result": True,
        "StatusCode": {"Code": "000", "Description": "Success", "AdditionalInfo": None},
        "SessionID": SID,
        "CPOPartnerSessionID": "1234XYZ",
        "EMPPartnerSessionID": "2345ABC",
    }
    charging_session = ChargingSession.objects.get(session_id=SID)
    assert charging_session.status == ChargingSession.Status.ACTIVE
    assert charging_session.evse_id == "DE*XYZ*ETEST1"
    assert charging_session.operator_id == "DE*XYZ"
    assert charging_session.provider_id == "DE-EMP"  # settings.OICP_PROVIDER_ID
    assert charging_session.started_at == at("2020-09-23T14:17:53.038Z")
    assert (charging_session.cpo_partner_session_id, charging_session.emp_partner_session_id) == ("1234XYZ", "2345ABC")
    assert charging_session.learned_late is False
    message = charging_session.inbound_messages.get()
    assert message.kind == InboundMessage.Kind.START
    assert message.raw == json.dumps(START)
    assert message.parsed["EvseID"] == "DE*XYZ*ETEST1"
    assert message.parsed["MeterValueStart"] == "0.000"
    assert message.operator_id == "DE*ABC"
    assert message.remote_addr == "127.0.0.1"
    events = list(charging_session.audit_records.order_by("pk").values_list("event_type", flat=True))
    assert events == [Event.SESSION_CREATED, Event.NOTIFICATION_RECEIVED]
    audit = charging_session.audit_records.get(event_type=Event.NOTIFICATION_RECEIVED)
    assert audit.data["kind"] == "START"
    assert audit.data["message"] == message.parsed
    assert audit.data["inbound_message_id"] == message.pk


@pytest.mark.django_db
def test_progress_updates_energy_and_last_update(client):
    post(client, NOTIFY_URL, START)
    charging_session = ChargingSession.objects.get(session_id=SID)
    ChargingSession.objects.filter(pk=charging_session.pk).update(last_update_at=timezone.now() - timedelta(hours=1))

    response = post(client, NOTIFY_URL, msg(PROGRESS, ConsumedEnergyProgress=9.5))

    assert_ack(response, result=True, code="000", status=200)
    charging_session.refresh_from_db()
    assert charging_session.energy_kwh == Decimal("9.500")
    assert charging_session.last_update_at > timezone.now() - timedelta(minutes=1)
    assert charging_session.status == ChargingSession.Status.ACTIVE
    assert charging_session.inbound_messages.filter(kind=InboundMessage.Kind.PROGRESS).get().parsed[
        "MeterValueInBetween"
    ] == {"meterValues": ["9.000"]}


@pytest.mark.django_db
def test_end_ends_charging_and_confirms_the_accepted_stop(client):
    charging_session = ChargingSessionFactory(session_id=SID, evse_id="DE*XYZ*ETEST1", operator_id="DE*XYZ")
    stop = RemoteStopRequestFactory(
        charging_session=charging_session,
        state=State.ACCEPTED,
        requested_at=timezone.now() - timedelta(minutes=2),
        finished_at=timezone.now() - timedelta(minutes=1),
    )

    response = post(client, NOTIFY_URL, END)

    assert_ack(response, result=True, code="000", status=200)
    charging_session.refresh_from_db()
    assert charging_session.status == ChargingSession.Status.CHARGING_ENDED
    assert charging_session.charging_ended_at == at(END["ChargingEnd"])
    assert charging_session.energy_kwh == Decimal("10.000")
    assert charging_session.learned_late is False
    stop.refresh_from_db()
    assert stop.state == State.CONFIRMED
    assert stop.confirmed_by == RemoteStopRequest.ConfirmedBy.END
    assert timedelta(minutes=2) <= stop.time_to_confirmation < timedelta(minutes=3)
    assert stop.audit_records.filter(event_type=Event.STOP_CONFIRMED).exists()
    audit = charging_session.audit_records.get(event_type=Event.NOTIFICATION_RECEIVED)
    assert audit.data["stops_confirmed"] == 1
    assert (audit.data["status_before"], audit.data["status_after"]) == ("ACTIVE", "CHARGING_ENDED")


@pytest.mark.django_db
def test_error_is_stored_on_the_session(client):
    post(client, NOTIFY_URL, START)

    response = post(client, NOTIFY_URL, ERROR)

    assert_ack(response, result=True, code="000", status=200)
    charging_session = ChargingSession.objects.get(session_id=SID)
    assert charging_session.last_error_type == "ConnectorError"
    assert charging_session.last_error_info == "Plug was not connected, EVSEID timed out reached"
    assert charging_session.last_error_at is not None
    assert charging_session.status == ChargingSession.Status.ACTIVE


@pytest.mark.django_db
def test_cdr_closes_the_session_and_confirms_the_stop(client):
    charging_session = ChargingSessionFactory(session_id=SID, evse_id="DE*XYZ*ETEST1", operator_id="DE*XYZ")
    stop = RemoteStopRequestFactory(charging_session=charging_session, state=State.ACCEPTED, finished_at=timezone.now())

    response = post(client, cdr_url(), CDR)

    ack = assert_ack(response, result=True, code="000", status=200)
    assert ack["StatusCode"]["AdditionalInfo"] is None
    assert ack["SessionID"] == SID
    charging_session.refresh_from_db()
    assert charging_session.status == ChargingSession.Status.CLOSED
    assert charging_session.ended_at == at(CDR["SessionEnd"])
    assert charging_session.energy_kwh == Decimal("10.000")
    assert charging_session.cdr_received_at is not None
    cdr = charging_session.cdr
    assert (cdr.session_id, cdr.evse_id, cdr.operator_id, cdr.source) == (SID, "DE*XYZ*ETEST1", "DE*XYZ", "PUSH")
    assert cdr.consumed_energy_kwh == Decimal("10.000")
    assert cdr.charging_start == at(CDR["ChargingStart"])
    assert cdr.data["HubProviderID"] == "DE-DCB"
    assert cdr.data["SignedMeteringValues"][1]["MeteringStatus"] == "End"
    stop.refresh_from_db()
    assert (stop.state, stop.confirmed_by) == (State.CONFIRMED, RemoteStopRequest.ConfirmedBy.CDR)
    audit = charging_session.audit_records.get(event_type=Event.CDR_RECEIVED)
    assert audit.data["duplicate"] is False and audit.data["stops_confirmed"] == 1
    assert audit.data["source"] == "PUSH"


@pytest.mark.django_db
def test_a_repeated_cdr_is_acknowledged_but_not_stored_twice(client):
    post(client, NOTIFY_URL, START)
    assert post(client, cdr_url(), CDR).status_code == 200
    closed = ChargingSession.objects.values().get(session_id=SID)

    response = post(client, cdr_url(), msg(CDR, ConsumedEnergy=11))

    ack = assert_ack(response, result=True, code="000", status=200)
    assert "Duplicate" in ack["StatusCode"]["AdditionalInfo"]
    assert ChargeDetailRecord.objects.count() == 1
    assert ChargeDetailRecord.objects.get().consumed_energy_kwh == Decimal("10.000")
    assert ChargingSession.objects.values().get(session_id=SID) == closed
    first, second = InboundMessage.objects.filter(kind="CDR").order_by("pk")
    assert "duplicate" not in first.parsed
    assert second.parsed["duplicate"] is True  # the raw repeat is kept, marked
    assert json.loads(second.raw)["ConsumedEnergy"] == 11
    audits = AuditRecord.objects.filter(event_type=Event.CDR_RECEIVED).order_by("pk")
    assert [a.data["duplicate"] for a in audits] == [False, True]
    assert audits[1].data["differs_from_stored"] is True


@pytest.mark.django_db
def test_pulled_cdr_after_pushed_one_is_a_duplicate():
    _, cdr = inbound.parse_charge_detail_record(json.dumps(CDR))
    first = services.record_cdr(cdr=cdr, raw=json.dumps(CDR), source="PUSH", remote_addr="127.0.0.1")
    again = services.record_cdr(cdr=cdr, raw=json.dumps(CDR), source="PULL")

    assert (first.created, first.duplicate, first.session_created) == (True, False, True)
    assert (again.created, again.duplicate, again.session_created) == (False, True, False)
    assert again.charging_session.pk == first.charging_session.pk
    assert again.inbound_message.remote_addr is None
    assert ChargeDetailRecord.objects.count() == 1
    assert (
        AuditRecord.objects.filter(event_type=Event.CDR_RECEIVED).order_by("pk").last().data["differs_from_stored"]
        is False
    )
    with pytest.raises(ValueError):
        services.record_cdr(cdr=cdr, raw="{}", source="EMAIL")


@pytest.mark.django_db
def test_cdr_for_an_unknown_session_creates_it_closed_and_learned_late(client):
    response = post(client, cdr_url(), CDR)

    assert_ack(response, result=True, code="000", status=200)
    charging_session = ChargingSession.objects.get(session_id=SID)
    assert charging_session.status == ChargingSession.Status.CLOSED
    assert charging_session.learned_late is True
    assert charging_session.started_at == at(CDR["SessionStart"])
    assert charging_session.charging_ended_at == at(CDR["ChargingEnd"])
    assert charging_session.provider_id == "DE-EMP"
    assert charging_session.cdr.session_id == SID
    created = charging_session.audit_records.get(event_type=Event.SESSION_CREATED)
    assert created.data["learned_late"] is True and created.data["source"] == "CDR_PUSH"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("sample", "status"),
    [
        (PROGRESS, ChargingSession.Status.ACTIVE),
        (END, ChargingSession.Status.CHARGING_ENDED),
        (ERROR, ChargingSession.Status.ACTIVE),
    ],
)
def test_notification_for_an_unknown_session_creates_it_learned_late(client, sample, status):
    assert_ack(post(client, NOTIFY_URL, sample), result=True, code="000", status=200)

    charging_session = ChargingSession.objects.get(session_id=SID)
    assert charging_session.learned_late is True
    assert charging_session.status == status
    assert charging_session.inbound_messages.get().kind == sample["Type"].upper()


@pytest.mark.django_db
def test_a_notification_after_the_cdr_does_not_reopen_the_session(client):
    post(client, cdr_url(), CDR)
    response = post(client, NOTIFY_URL, msg(END, ConsumedEnergy=3))

    assert_ack(response, result=True, code="000", status=200)
    charging_session = ChargingSession.objects.get(session_id=SID)
    assert charging_session.status == ChargingSession.Status.CLOSED  # status only moves forward
    assert charging_session.energy_kwh == Decimal("10.000")  # the CDR's energy is final


@pytest.mark.django_db
def test_ids_are_upper_cased_but_the_session_id_is_kept_as_sent_and_found_in_any_case(client):
    body = msg(START, EvseID="de*xyz*etest1", OperatorID="de*abc", SessionID=SID.upper())

    ack = assert_ack(post(client, NOTIFY_URL, body), result=True, code="000", status=200)

    # Hubject compares SessionIDs as given: echoed, kept and (in a stop) sent back unchanged.
    assert ack["SessionID"] == SID.upper()
    charging_session = ChargingSession.objects.get()
    assert (charging_session.session_id, charging_session.evse_id, charging_session.operator_id) == (
        SID.upper(),
        "DE*XYZ*ETEST1",
        "DE*XYZ",
    )
    message = charging_session.inbound_messages.get()
    assert (message.operator_id, message.parsed["OperatorID"]) == ("DE*ABC", "DE*ABC")
    # The CDR spells the SessionID in lower case: the same session, not a second one.
    cdr_response = post(
        client, cdr_url("de*xyz"), msg(CDR, SessionID=SID, EvseID="dexyzetest1", HubProviderID="de-dcb")
    )
    ack = assert_ack(cdr_response, result=True, code="000", status=200)
    assert ack["SessionID"] == SID
    assert ChargingSession.objects.get().status == ChargingSession.Status.CLOSED
    assert ChargingSession.objects.get().session_id == SID.upper()
    assert ChargeDetailRecord.objects.get().evse_id == "DEXYZETEST1"
    assert ChargeDetailRecord.objects.get().data["HubProviderID"] == "DE-DCB"


@pytest.mark.django_db
def test_the_session_timeline_keeps_every_message_raw_and_parsed(client):
    for sample in (START, PROGRESS, ERROR, END):
        post(client, NOTIFY_URL, sample)
    post(client, cdr_url(), CDR)

    charging_session = ChargingSession.objects.get(session_id=SID)
    messages = list(charging_session.inbound_messages.order_by("received_at", "pk"))
    assert [m.kind for m in messages] == ["START", "PROGRESS", "ERROR", "END", "CDR"]
    for message, sample in zip(messages, (START, PROGRESS, ERROR, END, CDR), strict=True):
        assert json.loads(message.raw) == sample
        assert message.parsed["SessionID"] == SID
        assert message.session_id == SID
    assert charging_session.audit_records.filter(event_type=Event.NOTIFICATION_RECEIVED).count() == 4
    assert charging_session.audit_records.filter(event_type=Event.CDR_RECEIVED).count() == 1
    assert charging_session.status == ChargingSession.Status.CLOSED


@pytest.mark.django_db
def test_hub_provider_id_typo_of_the_openapi_is_accepted(client):
    body = msg(CDR, HubProviderID=..., HubProviderId="DE-DCB")

    assert_ack(post(client, cdr_url(), body), result=True, code="000", status=200)
    assert ChargeDetailRecord.objects.get().data["HubProviderID"] == "DE-DCB"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change",
    [
        {"Unknown": {"added": ["by", "HBS"]}},  # HBS may add fields
        {"CPOPartnerSessionID": "[" * 30 + "{" * 30},  # brackets inside strings do not count as nesting
        {"CPOPartnerSessionID": None, "Identification": None},  # explicit nulls: absent
        {"ChargingStart": "2020-09-23T16:17:53+02:00"},
        {"ChargingStart": "2020-09-23T14:17:53.123456789-05:30"},
        {"MeterValueStart": 12.5, "PartnerProductID": "x" * 50, "EMPPartnerSessionID": "é" * 250},
        {"EvseID": "+49*810*000*438", "OperatorID": "+49*810"},
    ],
)
def test_valid_variations_are_accepted(client, change):
    assert_ack(post(client, NOTIFY_URL, msg(START, **change)), result=True, code="000", status=200)
    assert InboundMessage.objects.count() == 1


@pytest.mark.django_db
def test_a_hub_operator_may_send_for_its_sub_operator(client):
    # EvseID of operator DE*XYZ, pushed under the hub operator's ID given as HubOperatorID.
    assert_ack(post(client, cdr_url("DE*ABC"), CDR), result=True, code="000", status=200)
    # ISO operator IDs with and without the optional "*" are one operator.
    assert_ack(
        post(client, cdr_url("DEXYZ"), msg(CDR, SessionID="a" * 8 + "-aaaa-aaaa-aaaa-" + "a" * 12)),
        result=True,
        code="000",
        status=200,
    )


@pytest.mark.django_db
def test_every_openapi_example_is_accepted(client):
    import yaml

    schemas = yaml.safe_load(spec_file("openapi.yaml").read_text())["components"]["schemas"]
    for name in (
        "eRoamingChargingNotificationStart",
        "eRoamingChargingNotificationProgress",
        "eRoamingChargingNotificationError",
        "eRoamingChargingNotificationEnd",
    ):
        assert_ack(post(client, NOTIFY_URL, schemas[name]["example"]), result=True, code="000", status=200)
    assert_ack(
        post(client, cdr_url(), schemas["eRoamingChargeDetailRecord"]["example"]), result=True, code="000", status=200
    )
    assert ChargingSession.objects.get().status == ChargingSession.Status.CLOSED


# --- concurrency ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_losing_the_race_to_create_a_session_applies_the_message_to_the_winner(monkeypatch):
    """Two Starts for one unknown SessionID: the loser's insert fails on the unique SessionID,
    and its message is applied to the winner's row (deterministic stand-in for the race)."""
    from sessions.inbound.services import session_row as inbound_services

    winner = ChargingSessionFactory(session_id=SID, evse_id="DE*XYZ*ETEST1", operator_id="DE*XYZ")
    real_lookup = inbound_services._locked_session
    calls = []

    def lookup(session_id):
        calls.append(session_id)
        return None if len(calls) == 1 else real_lookup(session_id)  # the first look saw nothing

    monkeypatch.setattr(inbound_services, "_locked_session", lookup)
    _, notification = inbound.parse_charging_notification(json.dumps(START))

    outcome = services.record_charging_notification(notification=notification, raw="{}", remote_addr=None)

    assert outcome.charging_session.pk == winner.pk and outcome.session_created is False
    assert ChargingSession.objects.count() == 1
    assert not AuditRecord.objects.filter(event_type=Event.SESSION_CREATED).exists()  # rolled back
    assert outcome.inbound_message.charging_session_id == winner.pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_starts_for_one_session_create_it_once():
    body = json.dumps(START)
    barrier = threading.Barrier(4)
    statuses = []

    def send():
        try:
            barrier.wait()
            statuses.append(Client().post(NOTIFY_URL, data=body, content_type="application/json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 4
    assert ChargingSession.objects.filter(session_id=SID).count() == 1
    assert InboundMessage.objects.count() == 4
    assert AuditRecord.objects.filter(event_type=Event.SESSION_CREATED).count() == 1


# --- refused messages: 400 + 022 naming the field, nothing changed -------------------------------

NESTED = b"[" * 100_000 + b"]" * 100_000
BAD_MESSAGES = [
    # (id, url, body, the field the answer must name)
    ("not-json", NOTIFY_URL, b"Type=Start", "body"),
    ("empty", NOTIFY_URL, b"", "body"),
    ("list", NOTIFY_URL, b"[]", "body"),
    ("string", NOTIFY_URL, b'"Start"', "body"),
    ("number", NOTIFY_URL, b"42", "body"),
    ("null", NOTIFY_URL, b"null", "body"),
    ("cdr-list", cdr_url(), json.dumps([CDR]).encode(), "body"),
    (
        "non-utf8",
        NOTIFY_URL,
        json.dumps(START).replace("1234XYZ", "12\udcff").encode("utf-8", "surrogateescape"),
        "body",
    ),
    (
        "latin1",
        NOTIFY_URL,
        json.dumps(msg(START, CPOPartnerSessionID="Müller"), ensure_ascii=False).encode("latin-1"),
        "body",
    ),
    ("nested-100000-lists", NOTIFY_URL, NESTED, "body"),
    ("nested-100000-objects", NOTIFY_URL, b'{"a":' * 40_000 + b"1" + b"}" * 40_000, "body"),
    (
        "nested-in-field",
        NOTIFY_URL,
        json.dumps(
            msg(START, Identification={"RemoteIdentification": {"x": json.loads("[" * 25 + "]" * 25)}})
        ).encode(),
        "body",
    ),
    ("NaN", NOTIFY_URL, json.dumps(msg(END, ConsumedEnergy=float("nan"))).encode(), "NaN"),
    ("Infinity", cdr_url(), json.dumps(msg(CDR, ConsumedEnergy=float("inf"))).encode(), "Infinity"),
    ("duplicate-key", NOTIFY_URL, json.dumps(START)[:-1].encode() + b', "SessionID": "x"}', "SessionID"),
    ("huge-int", NOTIFY_URL, json.dumps(START)[:-1].encode() + b', "MeterValueStart": 1' + b"0" * 5000 + b"}", "body"),
    # types
    ("bool-for-number", NOTIFY_URL, msg(END, ConsumedEnergy=True), "ConsumedEnergy"),
    ("string-for-number", cdr_url(), msg(CDR, ConsumedEnergy="10"), "ConsumedEnergy"),
    ("number-for-string", NOTIFY_URL, msg(START, EvseID=1234), "EvseID"),
    ("bool-duration", NOTIFY_URL, msg(PROGRESS, ChargingDuration=False), "ChargingDuration"),
    # numbers
    ("negative-energy", NOTIFY_URL, msg(END, ConsumedEnergy=-1), "ConsumedEnergy"),
    ("huge-energy", cdr_url(), msg(CDR, ConsumedEnergy=1e20), "ConsumedEnergy"),
    # missing mandatory fields (and explicit null for one)
    *[
        (f"start-missing-{f}", NOTIFY_URL, msg(START, **{f: ...}), f)
        for f in ("Type", "SessionID", "EvseID", "ChargingStart")
    ],
    ("end-missing-ChargingEnd", NOTIFY_URL, msg(END, ChargingEnd=...), "ChargingEnd"),
    ("error-missing-ErrorType", NOTIFY_URL, msg(ERROR, ErrorType=...), "ErrorType"),
    ("null-SessionID", NOTIFY_URL, msg(START, SessionID=None), "SessionID"),
    *[
        (f"cdr-missing-{f}", cdr_url(), msg(CDR, **{f: ...}), f)
        for f in ("SessionID", "EvseID", "ChargingStart", "ChargingEnd", "SessionStart", "SessionEnd", "ConsumedEnergy")
    ],
    # ID formats
    ("bad-EvseID", NOTIFY_URL, msg(START, EvseID="XX"), "EvseID"),
    ("bad-SessionID", NOTIFY_URL, msg(START, SessionID="not-a-guid"), "SessionID"),
    # timestamps
    ("no-offset", NOTIFY_URL, msg(START, ChargingStart="2020-09-23T14:17:53"), "ChargingStart"),
    ("date-only", cdr_url(), msg(CDR, SessionEnd="2020-09-23"), "SessionEnd"),
    ("impossible-date", NOTIFY_URL, msg(END, ChargingEnd="2020-02-30T10:00:00Z"), "ChargingEnd"),
    ("year-1", cdr_url(), msg(CDR, ChargingStart="0001-01-01T00:00:00+01:00"), "ChargingStart"),
    # lengths
    # enums
    ("unknown-Type", NOTIFY_URL, msg(START, Type="Stop"), "Type"),
    ("lower-case-Type", NOTIFY_URL, msg(START, Type="start"), "Type"),
    ("number-Type", NOTIFY_URL, msg(START, Type=1), "Type"),
]


REAL_WORLD = [
    # (id, url, body, the anomaly code, the field it names): accepted with 200/000, kept as sent, flagged
    ("list-for-string", NOTIFY_URL, msg(START, CPOPartnerSessionID=["1234XYZ"]), "ignored", "CPOPartnerSessionID"),
    ("float-duration", NOTIFY_URL, msg(PROGRESS, ChargingDuration=1.5), "number_form", "ChargingDuration"),
    ("string-identification", cdr_url(), msg(CDR, Identification="DE-DCB-C12345678-X"), "ignored", "Identification"),
    ("bare-meter-list", NOTIFY_URL, msg(END, MeterValueInBetween=[0, 1]), "spelling", "MeterValueInBetween"),
    (
        "meter-value-string",
        cdr_url(),
        msg(CDR, MeterValueInBetween={"meterValues": ["1"]}),
        "ignored",
        "MeterValueInBetween",
    ),
    (
        "signed-values-object",
        cdr_url(),
        msg(CDR, SignedMeteringValues={"SignedMeteringValue": "x"}),
        "ignored",
        "SignedMeteringValues",
    ),
    ("four-decimals", NOTIFY_URL, msg(PROGRESS, ConsumedEnergyProgress=1.2345), "rounded", "ConsumedEnergyProgress"),
    ("negative-meter", cdr_url(), msg(CDR, MeterValueStart=-0.5), "ignored", "MeterValueStart"),
    ("progress-missing-EventOccurred", NOTIFY_URL, msg(PROGRESS, EventOccurred=...), "missing", "EventOccurred"),
    ("bad-OperatorID", NOTIFY_URL, msg(START, OperatorID="DE-ABC"), "ignored", "OperatorID"),
    ("bad-HubOperatorID", cdr_url(), msg(CDR, HubOperatorID="DEUTSCHLAND"), "ignored", "HubOperatorID"),
    ("bad-HubProviderID", cdr_url(), msg(CDR, HubProviderID="D|E"), "ignored", "HubProviderID"),
    ("bad-path-operator", cdr_url("not!an-op"), CDR, "path_operator", "operatorID"),
    ("other-operator-in-path", cdr_url("FR*QQQ"), CDR, "path_operator", "operatorID"),
    ("two-hub-provider-spellings", cdr_url(), msg(CDR, HubProviderId="DE-XXX"), "ignored", "HubProviderId"),
    ("not-a-date", NOTIFY_URL, msg(PROGRESS, EventOccurred="yesterday"), "ignored", "EventOccurred"),
    ("number-timestamp", NOTIFY_URL, msg(START, SessionStart=1600870673), "ignored", "SessionStart"),
    (
        "long-CPOPartnerSessionID",
        NOTIFY_URL,
        msg(START, CPOPartnerSessionID="x" * 251),
        "ignored",
        "CPOPartnerSessionID",
    ),
    ("long-EMPPartnerSessionID", cdr_url(), msg(CDR, EMPPartnerSessionID="x" * 251), "ignored", "EMPPartnerSessionID"),
    (
        "long-ErrorAdditionalInfo",
        NOTIFY_URL,
        msg(ERROR, ErrorAdditionalInfo="x" * 251),
        "over_long",
        "ErrorAdditionalInfo",
    ),
    (
        "long-SignedMeteringValue",
        cdr_url(),
        msg(CDR, SignedMeteringValues=[{"SignedMeteringValue": "x" * 3001, "MeteringStatus": "Start"}]),
        "over_long",
        "SignedMeteringValues",
    ),
    (
        "eleven-SignedMeteringValues",
        cdr_url(),
        msg(CDR, SignedMeteringValues=[{"SignedMeteringValue": "x", "MeteringStatus": "Progress"}] * 11),
        "too_many",
        "SignedMeteringValues",
    ),
    (
        "long-PublicKey",
        cdr_url(),
        msg(CDR, CalibrationLawVerificationInfo={"PublicKey": "k" * 1001}),
        "over_long",
        "CalibrationLawVerificationInfo",
    ),
    ("NUL-in-partner-id", NOTIFY_URL, msg(START, EMPPartnerSessionID="a\u0000b"), "ignored", "EMPPartnerSessionID"),
    ("sample-ErrorType-typo", NOTIFY_URL, msg(ERROR, ErrorType="Connector Error"), "spelling", "ErrorType"),
    (
        "bad-MeteringStatus",
        cdr_url(),
        msg(CDR, SignedMeteringValues=[{"SignedMeteringValue": "x", "MeteringStatus": "Middle"}]),
        "unknown_value",
        "SignedMeteringValues",
    ),
    ("start-missing-OperatorID", NOTIFY_URL, msg(START, OperatorID=...), "derived", "OperatorID"),
    ("cdr-missing-Identification", cdr_url(), msg(CDR, Identification=...), "missing", "Identification"),
    ("float-noise-energy", NOTIFY_URL, msg(END, ConsumedEnergy=1234.5000000000002), "rounded", "ConsumedEnergy"),
    ("float-noise-cdr", cdr_url(), msg(CDR, ConsumedEnergy=12.3456), "rounded", "ConsumedEnergy"),
    ("float-duration-whole", NOTIFY_URL, msg(PROGRESS, ChargingDuration=48000.0), "number_form", "ChargingDuration"),
    ("long-PartnerProductID", NOTIFY_URL, msg(START, PartnerProductID="x" * 51), "over_long", "PartnerProductID"),
    ("very-long-PartnerProductID", NOTIFY_URL, msg(START, PartnerProductID="x" * 101), "over_long", "PartnerProductID"),
    ("cdr-long-PartnerProductID", cdr_url(), msg(CDR, PartnerProductID="x" * 130), "over_long", "PartnerProductID"),
    ("unknown-ErrorType", NOTIFY_URL, msg(ERROR, ErrorType="GroundFault"), "unknown_value", "ErrorType"),
    ("critical-error-spaced", NOTIFY_URL, msg(ERROR, ErrorType="critical error"), "spelling", "ErrorType"),
    ("hub-operator-sample", NOTIFY_URL, START, "operator_differs", "OperatorID"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "body", "field"), [case[1:] for case in BAD_MESSAGES], ids=[case[0] for case in BAD_MESSAGES]
)
def test_bad_messages_are_refused_with_022_naming_the_field_and_change_nothing(client, url, body, field):
    # An existing session with an accepted stop: a refused message must not touch either.
    charging_session = ChargingSessionFactory(session_id=SID, evse_id="DE*XYZ*ETEST1", operator_id="DE*XYZ")
    RemoteStopRequestFactory(charging_session=charging_session, state=State.ACCEPTED, finished_at=timezone.now())
    before = database_state()

    response = post(client, url, body)

    ack = assert_ack(response, result=False, code="022", status=400)
    assert ack["StatusCode"]["Description"] == "Data error"
    assert field in ack["StatusCode"]["AdditionalInfo"]
    assert len(ack["StatusCode"]["AdditionalInfo"]) <= 1000
    assert database_state() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "body", "code", "field"), [case[1:] for case in REAL_WORLD], ids=[case[0] for case in REAL_WORLD]
)
def test_real_world_variants_are_accepted_kept_as_sent_and_flagged(client, url, body, code, field):
    charging_session = ChargingSessionFactory(session_id=SID, evse_id="DE*XYZ*ETEST1", operator_id="DE*XYZ")
    raw = body if isinstance(body, bytes) else json.dumps(body)

    response = post(client, url, raw)

    ack = assert_ack(response, result=True, code="000", status=200)
    assert ack["SessionID"] == SID
    message = InboundMessage.objects.get()
    assert message.raw == raw  # the body is kept exactly as sent
    assert message.flagged and not message.held_back
    assert message.charging_session == charging_session
    flagged = {(anomaly["code"], anomaly["field"]) for anomaly in message.anomalies}
    assert (code, field) in flagged, message.anomalies
    assert all(anomaly["text"] for anomaly in message.anomalies)
    # The same anomalies are in the audit trail, for the session's timeline.
    record = AuditRecord.objects.filter(event_type__in=[Event.NOTIFICATION_RECEIVED, Event.CDR_RECEIVED]).get()
    assert record.charging_session == charging_session
    assert record.data["anomalies"] == message.anomalies


@pytest.mark.django_db
def test_a_tidy_message_has_no_anomalies(client):
    ChargingSessionFactory(session_id=SID, evse_id="DE*XYZ*ETEST1", operator_id="DE*XYZ")

    assert_ack(
        post(client, NOTIFY_URL, msg(START, OperatorID="DE*XYZ", PartnerProductID="x" * 50)),
        result=True,
        code="000",
        status=200,
    )
    assert_ack(post(client, cdr_url(), CDR), result=True, code="000", status=200)

    assert not InboundMessage.objects.filter(flagged=True).exists()
    assert all(message.anomalies == [] for message in InboundMessage.objects.all())


@pytest.mark.django_db
def test_float_noise_is_stored_rounded_and_says_so(client):
    charging_session = ChargingSessionFactory(session_id=SID, evse_id="DE*XYZ*ETEST1", operator_id="DE*XYZ")

    post(client, NOTIFY_URL, msg(PROGRESS, ConsumedEnergyProgress=12.3456))
    charging_session.refresh_from_db()
    assert charging_session.energy_kwh == Decimal("12.346")
    texts = [anomaly["text"] for anomaly in InboundMessage.objects.get().anomalies]
    assert "ConsumedEnergyProgress 12.3456 stored as 12.346" in texts

    post(client, cdr_url(), msg(CDR, SessionID=SID, ConsumedEnergy=1234.5000000000002))
    charging_session.refresh_from_db()
    assert charging_session.energy_kwh == Decimal("1234.500")
    assert charging_session.cdr.consumed_energy_kwh == Decimal("1234.500")


@pytest.mark.django_db
def test_hubjects_connector_error_sample_spelling_is_read_as_the_enum(client):
    charging_session = ChargingSessionFactory(session_id=SID, evse_id="DE*XYZ*ETEST1", operator_id="DE*XYZ")

    assert_ack(post(client, NOTIFY_URL, msg(ERROR, ErrorType="Connector Error")), result=True, code="000", status=200)

    charging_session.refresh_from_db()
    assert charging_session.last_error_type == "ConnectorError"
    texts = [anomaly["text"] for anomaly in InboundMessage.objects.get().anomalies]
    assert "ErrorType 'Connector Error' read as ConnectorError" in texts


@pytest.mark.django_db
def test_a_cdr_pushed_to_another_operators_path_is_kept_and_says_whose_evse_it_is(client):
    assert_ack(post(client, cdr_url("DE*QQQ"), msg(CDR, SessionID=SID)), result=True, code="000", status=200)

    texts = [anomaly["text"] for anomaly in InboundMessage.objects.get().anomalies]
    assert "CDR pushed for operator DE*QQQ; its EvseID belongs to DE*XYZ" in texts
    assert ChargingSession.objects.get().status == ChargingSession.Status.CLOSED


@pytest.mark.django_db
def test_every_problem_is_named_at_once(client):
    body = msg(START, EvseID="XX", ChargingStart="2020-09-23T14:17:53", Type="Stopp", CPOPartnerSessionID="x" * 251)

    ack = assert_ack(post(client, NOTIFY_URL, body), result=False, code="022", status=400)

    info = ack["StatusCode"]["AdditionalInfo"]
    assert "EvseID: 'XX' is not an EvseID" in info
    assert "Type:" in info
    assert ack["SessionID"] == SID  # a valid SessionID is echoed even in a refusal
    assert ack["CPOPartnerSessionID"] is None  # an invalid one is not


@pytest.mark.django_db
def test_oversized_body_is_refused_with_413_before_it_is_read(client, settings):
    settings.OICP_INBOUND_MAX_BODY_BYTES = 2000
    before = database_state()
    big = json.dumps(msg(START, Padding="x" * 3000))

    ack = assert_ack(post(client, NOTIFY_URL, big), result=False, code="022", status=413)

    assert "2000 bytes" in ack["StatusCode"]["AdditionalInfo"]
    assert database_state() == before
    assert_ack(post(client, NOTIFY_URL, START), result=True, code="000", status=200)  # under the limit


@pytest.mark.django_db
def test_default_body_limit_is_256_kib(client, settings):
    assert settings.OICP_INBOUND_MAX_BODY_BYTES == 256 * 1024
    big = json.dumps(msg(CDR, Padding="x" * (256 * 1024)))
    assert_ack(post(client, cdr_url(), big), result=False, code="022", status=413)
    assert not InboundMessage.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "put", "delete", "patch", "options"])
def test_only_post_is_allowed(client, method):
    response = getattr(client, method)(NOTIFY_URL)

    ack = assert_ack(response, result=False, code="022", status=405)
    assert response["Allow"] == "POST"
    assert "POST" in ack["StatusCode"]["AdditionalInfo"]
    assert client.get(cdr_url()).status_code == 405


@pytest.mark.django_db
def test_bad_content_length_is_refused(client):
    response = client.generic(
        "POST", NOTIFY_URL, json.dumps(START), content_type="application/json", CONTENT_LENGTH="many"
    )
    assert_ack(response, result=False, code="022", status=400)
    assert not InboundMessage.objects.exists()


# --- who may call -------------------------------------------------------------------------------


def refusals():
    """The INBOUND_REFUSED records, once the minutes of the refused calls are over and reported."""
    services.report_inbound_refusals(now=timezone.now() + timedelta(minutes=1))
    return list(AuditRecord.objects.filter(event_type=Event.INBOUND_REFUSED).order_by("pk"))


@pytest.mark.django_db
def test_a_caller_outside_the_allowed_networks_is_refused_and_audited(client):
    response = post(client, NOTIFY_URL, START, REMOTE_ADDR="203.0.113.9")

    ack = assert_ack(response, result=False, code="017", status=403)
    assert ack["StatusCode"]["Description"] == "Unauthorized Access"
    assert not ChargingSession.objects.exists() and not InboundMessage.objects.exists()
    # Refused before anything else is looked at: a bad body or method from outside is also a 403.
    assert post(client, cdr_url(), b"garbage", REMOTE_ADDR="203.0.113.9").status_code == 403
    assert client.get(NOTIFY_URL, REMOTE_ADDR="203.0.113.9").status_code == 403
    # Counted, and audited once for the caller's minute with the count (anyone can call).
    (refusal,) = refusals()
    assert refusal.data == {
        "client_address": "203.0.113.9",
        "minute": refusal.data["minute"],
        "refused_calls": 3,
        "reasons": {"address not in OICP_INBOUND_ALLOWED_NETWORKS": 3},
        "first_path": NOTIFY_URL,
    }


@pytest.mark.django_db
def test_ipv6_loopback_is_allowed_by_default(client):
    assert_ack(post(client, NOTIFY_URL, START, REMOTE_ADDR="::1"), result=True, code="000", status=200)
    assert InboundMessage.objects.get().remote_addr == "::1"


@pytest.mark.django_db
def test_allowed_networks_setting(client, settings):
    settings.OICP_INBOUND_ALLOWED_NETWORKS = ["198.51.100.0/24"]
    assert post(client, NOTIFY_URL, START, REMOTE_ADDR="127.0.0.1").status_code == 403
    assert_ack(post(client, NOTIFY_URL, START, REMOTE_ADDR="198.51.100.20"), result=True, code="000", status=200)


@pytest.mark.django_db
def test_behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_forwarded_address(client, settings):
    settings.OICP_INBOUND_ALLOWED_NETWORKS = ["198.51.100.0/24"]
    settings.OICP_INBOUND_TRUSTED_PROXIES = ["10.0.0.0/8"]

    # Through two proxies; whatever the client put at the left of the header does not count.
    ok = post(
        client, NOTIFY_URL, START, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.7, 10.1.1.1"
    )
    assert_ack(ok, result=True, code="000", status=200)
    assert InboundMessage.objects.get().remote_addr == "198.51.100.7"

    spoofed = post(client, NOTIFY_URL, START, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.9")
    assert_ack(spoofed, result=False, code="017", status=403)
    assert refusals()[-1].data["client_address"] == "203.0.113.9"

    # From a caller that is not a trusted proxy, X-Forwarded-For is ignored.
    direct = post(client, NOTIFY_URL, START, REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert_ack(direct, result=False, code="017", status=403)

    garbage = post(client, NOTIFY_URL, START, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.7, evil")
    assert_ack(garbage, result=False, code="017", status=403)
    assert InboundRefusalCount.objects.get(client_address="10.0.0.5").reason == "unreadable X-Forwarded-For"


@pytest.mark.django_db
def test_verified_client_certificate_header_is_required_when_configured(client, settings):
    settings.OICP_INBOUND_TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.OICP_INBOUND_VERIFIED_HEADER = "X-SSL-Client-Verify"
    via_proxy = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "127.0.0.1"}

    verified = post(client, NOTIFY_URL, START, HTTP_X_SSL_CLIENT_VERIFY="SUCCESS", **via_proxy)
    assert_ack(verified, result=True, code="000", status=200)

    for headers in ({"HTTP_X_SSL_CLIENT_VERIFY": "FAILED:unable to verify"}, {}):
        assert_ack(post(client, NOTIFY_URL, START, **headers, **via_proxy), result=False, code="017", status=403)
    # Straight from an allowed address, but not through the proxy: the header cannot be trusted.
    direct = post(client, NOTIFY_URL, START, REMOTE_ADDR="127.0.0.1", HTTP_X_SSL_CLIENT_VERIFY="SUCCESS")
    assert_ack(direct, result=False, code="017", status=403)
    (refusal,) = refusals()  # one caller, one minute: one record with the counts by reason
    assert refusal.data["reasons"] == {
        "X-SSL-Client-Verify is not SUCCESS": 2,
        "X-SSL-Client-Verify required: not through a trusted proxy": 1,
    }
    assert InboundMessage.objects.count() == 1


@pytest.mark.django_db
def test_no_csrf_token_and_no_login_needed():
    client = Client(enforce_csrf_checks=True)

    assert_ack(post(client, NOTIFY_URL, START), result=True, code="000", status=200)
    assert_ack(post(client, cdr_url(), CDR), result=True, code="000", status=200)


@pytest.mark.django_db
def test_the_agents_screens_still_need_csrf(agent):
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent)
    charging_session = ChargingSessionFactory()
    response = client.post(f"/sessions/{charging_session.pk}/stop/", {"reason": "DRIVER_ASKED"})
    assert response.status_code == 403
    assert not RemoteStopRequest.objects.exists()


# --- the parser on its own ------------------------------------------------------------------------


def test_nesting_guard_is_linear_and_ignores_strings():
    assert nesting_exceeds("[" * 21 + "]" * 21)
    assert not nesting_exceeds("[" * 20 + "]" * 20)
    assert not nesting_exceeds("[]" * 30)  # more brackets than the limit, none deeper than one
    assert not nesting_exceeds('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[\\"[[[[[[[[["}')
    with pytest.raises(inbound.InboundError, match="nested deeper"):
        inbound.decode_body(b"[" * 1_000_000)


def test_a_lone_surrogate_is_refused_and_other_text_kept():
    from sessions.oicp.fields import FieldError, check_storable

    assert check_storable("Müller 日本 🚗") == "Müller 日本 🚗"
    for text in (json.loads('"\\ud800"'), json.loads('"ab\\udfffcd"'), "Müller" + json.loads('"\\udc00"')):
        with pytest.raises(FieldError, match="unpaired surrogate"):
            check_storable(text)


def test_parsed_values_are_typed_and_normalised():
    _, notification = inbound.parse_charging_notification(json.dumps(msg(END, ConsumedEnergy=10.25)))

    assert notification.kind == "END"
    assert notification.consumed_energy == Decimal("10.250")
    assert notification.energy_kwh == Decimal("10.250")
    assert notification.charging_end.utcoffset() == timedelta(0)
    assert notification.meter_values_in_between == (Decimal("0.000"),)
    with pytest.raises(AttributeError):
        notification.session_id = "x"  # frozen
    _, start = inbound.parse_charging_notification(json.dumps(msg(START, ChargingStart="2020-09-23T16:17:53+02:00")))
    assert start.charging_start.utcoffset() == timedelta(hours=2)  # the offset is kept
    assert start.charging_start == datetime(2020, 9, 23, 14, 17, 53, tzinfo=UTC)


@pytest.mark.django_db
def test_ten_thousand_refused_calls_leave_a_handful_of_audit_records(client):
    """As found: each refused call wrote a chained record (1,000 in 2.1 s, kept ten years)."""
    before = AuditRecord.objects.count()
    callers = ["203.0.113.9", "203.0.113.10"]
    start = timezone.now().replace(second=0, microsecond=0)
    for index in range(10_000):
        # Two callers over about three minutes (counted through the service the view calls).
        services.count_inbound_refusal(
            client_address=callers[index % 2],
            path=NOTIFY_URL,
            reason="address not in OICP_INBOUND_ALLOWED_NETWORKS",
            now=start + timedelta(seconds=index // 60),
        )
    for _ in range(20):  # and through the endpoint
        assert post(client, NOTIFY_URL, START, REMOTE_ADDR="203.0.113.9").status_code == 403

    services.report_inbound_refusals(now=timezone.now() + timedelta(minutes=5))

    records = AuditRecord.objects.filter(event_type=Event.INBOUND_REFUSED)
    assert AuditRecord.objects.count() - before == records.count() <= 12
    assert sum(record.data["refused_calls"] for record in records) == 10_020
    assert services.report_inbound_refusals(now=timezone.now() + timedelta(minutes=5)) == 0  # once each


@pytest.mark.django_db
def test_a_minute_still_running_is_not_reported_yet(client):
    post(client, NOTIFY_URL, START, REMOTE_ADDR="203.0.113.9")

    assert services.report_inbound_refusals() == 0
    assert services.report_inbound_refusals(now=timezone.now() + timedelta(minutes=1)) == 1


@pytest.mark.django_db
def test_a_refused_caller_gets_its_403_with_the_database_down(client, monkeypatch):
    """As found: refused callers got an HTML 500 while the database was down (allowed ones 503/021)."""
    from django.db import OperationalError

    def database_down(**kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(services, "count_inbound_refusal", database_down)

    response = post(client, NOTIFY_URL, START, REMOTE_ADDR="203.0.113.9")

    ack = assert_ack(response, result=False, code="017", status=403)
    assert ack["StatusCode"]["Description"] == "Unauthorized Access"
