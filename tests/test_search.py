"""Search as drivers speak (issue 12): one box finds a session by what the driver can read out.

- an EvseID in any spacing, separator or case ("DE ACC E7260 4", "DEACCE72604", "de-acc-e7260-4"),
- the start of a SessionID (8 characters or more), a partner session ID in any case,
- the contract ID (EvcoID) in any of its spellings, with or without its check digit, the card's UID
  and the number printed on the card; the portal keeps those from every notification and CDR that
  carries an Identification, and from the session feed.

Every lookup is one indexed equality or prefix on a key the database computes from the stored
value (`sessions.oicp.ids.id_search_key`); the EXPLAIN tests below prove the index is used on the
database the suite runs on (SQLite, or PostgreSQL with `scripts/test.sh`).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessions import services
from sessions.charging import selectors
from sessions.models import AuditRecord, ChargingSession
from sessions.oicp import ids, inbound
from sessions.stops.selectors import StopHistoryFilters, stop_history
from tests.factories import ChargingSessionFactory, RemoteStopRequestFactory
from tests.test_import_sessions import line, run, run_failing, write
from tests.test_inbound import CDR, END, ERROR, PROGRESS, SID, START, msg

Event = AuditRecord.EventType
DRIVER_SID = "1df4fad6-0c2b-4a8e-9f0e-3b6d2a9c41e7"


def detail_url(charging_session) -> str:
    return reverse("charging_sessions:session-detail", args=[charging_session.pk])


def search(client, query: str, **params):
    return client.get(reverse("charging_sessions:session-list"), {"q": query, "status": "", **params})


@pytest.fixture
def driver_session(db):
    """The session of the issue's driver, and one more session so a search must choose."""
    ChargingSessionFactory(
        evse_id="DE*ACC*E7261*4",
        contract_id="DE-EMP-C87654321-Y",
        card_uid="04A1B2C3D4E5F6",
        printed_number="9876 656",
        cpo_partner_session_id="CPO-OTHER",
    )
    return ChargingSessionFactory(
        session_id=DRIVER_SID,
        evse_id="DE*ACC*E7260*4",
        emp_partner_session_id="EMP-Abc-42",
        cpo_partner_session_id="CPO-Xyz-7",
        contract_id="DE-EMP-C12345678-X",
        card_uid="04A23BC1D2E3F4",
        printed_number="9876 655",
    )


# --- the normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spoken",
    [
        "DE*ACC*E7260*4",
        "DE ACC E7260 4",
        "DEACCE72604",
        "de-acc-e7260-4",
        "de.acc.e7260.4",
        " de*acc*e7260*4 ",
        "DE ACC E 7260 4",
        "de\tacc\u00a0e7260 4",
    ],
)
def test_every_spelling_of_an_evse_id_has_one_search_key(spoken):
    assert ids.id_search_key(spoken) == "DEACCE72604"


@pytest.mark.parametrize(
    "spoken",
    [
        "DE-EMP-C12345678-X",
        "DEEMPC12345678X",
        "de emp c12345678 x",
        "DE*EMP*C12345678*X",
        "de-emp-c1234-5678-x",
    ],
)
def test_every_spelling_of_a_contract_id_has_one_search_key(spoken):
    assert ids.id_search_key(spoken) == "DEEMPC12345678X"


def test_din_evse_ids_lose_their_plus_and_stars():
    assert ids.id_search_key("+49*810*000*438") == ids.id_search_key("49 810 000 438") == "49810000438"


@pytest.mark.parametrize(
    ("query", "prefix"),
    [
        ("1df4fad6", "1df4fad6"),
        ("1DF4FAD6-0C2B", "1df4fad6-0c2b"),
        (" 1df4fad6 ", "1df4fad6"),
        ("1df4fad", None),
        ("DE*ACC*E7260*4", None),
        ("1df4 fad6", None),
    ],
)
def test_a_session_id_prefix_has_eight_characters_or_more(query, prefix):
    assert ids.session_id_prefix(query) == prefix


def test_the_identification_values_come_from_every_kind_first_one_first():
    values = ids.identification_values(
        {
            "RFIDIdentification": {
                "UID": "04a23bc1d2e3f4",
                "EvcoID": "DE-EMP-C12345678-X",
                "PrintedNumber": "9876 655",
                "RFID": "mifareCls",
            },
            "RemoteIdentification": {"EvcoID": "DEEMPC12345678X"},  # the same contract, another spelling
            "QRCodeIdentification": {"EvcoID": "DE-EMP-C99999999-Z", "PIN": "1234"},
        }
    )
    assert values == {
        "contract_id": ["DE-EMP-C12345678-X", "DE-EMP-C99999999-Z"],
        "card_uid": ["04a23bc1d2e3f4"],
        "printed_number": ["9876 655"],
    }


@pytest.mark.parametrize(
    "identification",
    [
        None,
        {},
        {"RemoteIdentification": {"EvcoID": 12345}},
        {"RemoteIdentification": {"EvcoID": "  "}},
        {"RemoteIdentification": {"EvcoID": "X" * 51}},
        {"RFIDMifareFamilyIdentification": {"UID": "A" * 51}},
        {"RFIDIdentification": {"PrintedNumber": "1" * 151, "UID": ["no"]}},
        {"RemoteIdentification": "DE-EMP"},
    ],
)
def test_unusable_identification_values_are_left_in_the_raw_message(identification):
    assert ids.identification_values(identification) == {"contract_id": [], "card_uid": [], "printed_number": []}


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    evse_id=st.from_regex(ids.EVSE_ID, fullmatch=True),
    contract=st.from_regex(r"[A-Za-z]{2}[*-]?[A-Za-z0-9]{3}[*-]?C?[A-Za-z0-9]{6,8}[*-]?[0-9A-Za-z]", fullmatch=True),
)
def test_the_database_computes_the_same_keys_as_the_query_side(evse_id, contract):
    """The keys are GeneratedFields (no write path can forget them); the query side normalises the
    agent's text with the same function, so the two must agree for every ID the formats allow."""
    charging_session = ChargingSessionFactory(
        evse_id=evse_id,
        operator_id="DE*ACC",
        contract_id=contract,
        card_uid=contract.lower(),
        printed_number=contract,
        emp_partner_session_id=contract,
    )
    keys = (
        ChargingSession.objects.filter(pk=charging_session.pk)
        .values("evse_key", "contract_key", "card_uid_key", "printed_number_key", "emp_partner_key")
        .get()
    )
    assert keys == {
        "evse_key": ids.id_search_key(evse_id),
        "contract_key": ids.id_search_key(contract),
        "card_uid_key": ids.id_search_key(contract),
        "printed_number_key": ids.id_search_key(contract),
        "emp_partner_key": ids.partner_search_key(contract),
    }
    charging_session.delete()


# --- the search box: one match opens the session -------------------------------------------------


DRIVER_SPEAK = [
    # An EvseID in any spacing, separator or case (DIGEST §6: the "*" is optional in the format).
    "DE*ACC*E7260*4",
    "DE ACC E7260 4",
    "DEACCE72604",
    "de-acc-e7260-4",
    "de acc e7260 4",
    # The start of the SessionID (8+ characters), in any case; the whole SessionID in upper case.
    "1df4fad6",
    "1DF4FAD6",
    "1df4fad6-0c2b",
    DRIVER_SID.upper(),
    # Partner session IDs in any case.
    "emp-abc-42",
    "EMP-ABC-42",
    "cpo-xyz-7",
    # The contract ID (EvcoID) in any spelling, also without its check digit.
    "DE-EMP-C12345678-X",
    "DEEMPC12345678X",
    "de emp c12345678 x",
    "DE*EMP*C12345678*X",
    "DE-EMP-C12345678",
    # The card's UID (a reader shows it in lower case or with colons) and its printed number.
    "04A23BC1D2E3F4",
    "04:a2:3b:c1:d2:e3:f4",
    "9876 655",
    "9876655",
]


@pytest.mark.parametrize("spoken", DRIVER_SPEAK)
def test_each_way_a_driver_names_the_session_opens_it(agent_client, driver_session, spoken):
    response = search(agent_client, spoken)
    found = response.context["page"].paginator.count if response.context else None
    assert response.status_code == 302, f"{spoken!r} found {found} sessions"
    assert response["Location"] == detail_url(driver_session)


def test_the_list_page_search_field_finds_it_too_with_the_default_state_filter(agent_client, driver_session):
    response = agent_client.get(reverse("charging_sessions:session-list"), {"q": "de acc e7260 4"})
    assert response.status_code == 302 and response["Location"] == detail_url(driver_session)


@pytest.mark.parametrize("spoken", ["1df4fad", "DE-EMP-C1234", "04A23BC1", "9876", "emp-abc", "nothing-like-it"])
def test_too_little_of_an_id_finds_nothing(agent_client, driver_session, spoken):
    response = search(agent_client, spoken)
    assert response.status_code == 200 and response.context["page"].paginator.count == 0


def test_several_matches_are_listed(agent_client, driver_session):
    response = search(agent_client, "de acc e726")  # an EvseID prefix: E7260*4 and E7261*4
    assert response.status_code == 200 and response.context["page"].paginator.count == 2
    content = response.content.decode()
    assert "DE*ACC*E7260*4" in content and "DE*ACC*E7261*4" in content


def test_one_contract_on_several_sessions_lists_them(agent_client, driver_session):
    ChargingSessionFactory(evse_id="NL*FST*E0001*1", contract_id="DEEMPC12345678X")
    response = search(agent_client, "de-emp-c12345678-x")
    assert response.status_code == 200 and response.context["page"].paginator.count == 2


def test_the_case_reference_still_finds_the_session(agent_client, driver_session, agent):
    RemoteStopRequestFactory(charging_session=driver_session, requested_by=agent, case_reference="T-4711")
    response = search(agent_client, "T-4711")
    assert response.status_code == 302 and response["Location"] == detail_url(driver_session)


def test_the_search_box_says_what_can_be_typed(agent_client, driver_session):
    content = search(agent_client, "de acc e726").content.decode()
    box = content[content.index('id="global-search"') :].split(">", 1)[0]
    for words in ("EvseID", "contract ID", "card"):
        assert words in box


def test_the_session_page_shows_the_contract_and_card(agent_client, driver_session):
    content = agent_client.get(detail_url(driver_session)).content.decode()
    for label, value in (
        ("Contract ID", "DE-EMP-C12345678-X"),
        ("Card UID", "04A23BC1D2E3F4"),
        ("Printed card number", "9876 655"),
    ):
        assert label in content and value in content


def test_the_history_search_speaks_the_same_way(db, driver_session, agent):
    stop = RemoteStopRequestFactory(charging_session=driver_session, requested_by=agent)
    for spoken in ("de acc e7260 4", "1df4fad6", "DE-EMP-C12345678-X"):
        assert list(stop_history(filters=StopHistoryFilters(q=spoken))) == [stop], spoken


# --- where the values come from: every notification and CDR that carries them ----------------------

RFID = {
    "RFIDIdentification": {
        "UID": "04A23BC1D2E3F4",
        "EvcoID": "DE-EMP-C12345678-X",
        "PrintedNumber": "9876 655",
        "RFID": "mifareCls",
    }
}
SAMPLES = {"Start": START, "Progress": PROGRESS, "End": END, "Error": ERROR, "CDR": CDR}


def apply(sample: dict, **changes):
    body = msg(sample, **changes)
    if "Type" in body:
        return services.record_charging_notification(
            notification=inbound.charging_notification_from_dict(json.loads(json.dumps(body))),
            raw=json.dumps(body),
            remote_addr=None,
        )
    return services.record_cdr(
        cdr=inbound.charge_detail_record_from_dict(json.loads(json.dumps(body))), raw=json.dumps(body), source="PUSH"
    )


def identification_of(charging_session) -> tuple[str, str, str]:
    charging_session.refresh_from_db()
    return charging_session.contract_id, charging_session.card_uid, charging_session.printed_number


@pytest.mark.django_db
@pytest.mark.parametrize("kind", SAMPLES)
def test_a_new_session_keeps_the_identification_of_the_message_that_created_it(kind):
    outcome = apply(SAMPLES[kind], Identification=RFID)
    assert outcome.session_created
    assert identification_of(outcome.charging_session) == ("DE-EMP-C12345678-X", "04A23BC1D2E3F4", "9876 655")


@pytest.mark.django_db
@pytest.mark.parametrize("kind", SAMPLES)
def test_a_known_session_learns_the_identification_from_any_message(kind):
    known = ChargingSessionFactory(session_id=SID, evse_id="DE*XYZ*ETEST1")
    outcome = apply(SAMPLES[kind], Identification=RFID)
    assert not outcome.session_created and outcome.charging_session.pk == known.pk
    assert identification_of(known) == ("DE-EMP-C12345678-X", "04A23BC1D2E3F4", "9876 655")


@pytest.mark.django_db
def test_hubjects_cdr_sample_gives_the_contract_of_its_remote_identification():
    outcome = apply(CDR)
    assert identification_of(outcome.charging_session) == ("DE-DCB-C12345678-X", "1234ABCD", "")


@pytest.mark.django_db
def test_the_first_contract_id_stays_and_a_different_one_is_recorded_in_the_audit_data():
    apply(START, Identification={"RemoteIdentification": {"EvcoID": "DE-EMP-C12345678-X"}})
    outcome = apply(
        END,
        Identification={
            "RemoteIdentification": {"EvcoID": "DE-EMP-C99999999-Z"},
            "RFIDMifareFamilyIdentification": {"UID": "04A23BC1D2E3F4"},
        },
    )
    assert identification_of(outcome.charging_session) == ("DE-EMP-C12345678-X", "04A23BC1D2E3F4", "")
    audit = AuditRecord.objects.filter(event_type=Event.NOTIFICATION_RECEIVED).latest("pk")
    assert audit.data["identification_differs"] == [
        {"field": "contract_id", "kept": "DE-EMP-C12345678-X", "received": "DE-EMP-C99999999-Z"}
    ]
    # The CDR says the same again: recorded too, still the first one kept.
    apply(CDR, Identification={"RemoteIdentification": {"EvcoID": "DE-EMP-C99999999-Z"}})
    audit = AuditRecord.objects.filter(event_type=Event.CDR_RECEIVED).get()
    assert audit.data["identification_differs"][0]["received"] == "DE-EMP-C99999999-Z"
    assert identification_of(outcome.charging_session)[0] == "DE-EMP-C12345678-X"


@pytest.mark.django_db
def test_the_same_contract_in_another_spelling_is_not_a_difference():
    apply(START, Identification={"RemoteIdentification": {"EvcoID": "DE-EMP-C12345678-X"}})
    apply(PROGRESS, Identification={"RemoteIdentification": {"EvcoID": "deempc12345678x"}})
    audit = AuditRecord.objects.filter(event_type=Event.NOTIFICATION_RECEIVED).latest("pk")
    assert "identification_differs" not in audit.data


@pytest.mark.django_db
def test_a_message_held_back_for_another_evse_gives_the_session_nothing():
    known = ChargingSessionFactory(session_id=SID, evse_id="DE*XYZ*ETEST1")
    outcome = apply(PROGRESS, EvseID="DE*XYZ*EOTHER", Identification=RFID)
    assert outcome.held_back and identification_of(known) == ("", "", "")


# --- and from the session feed --------------------------------------------------------------------


@pytest.mark.django_db
def test_the_feed_brings_the_contract_card_uid_and_printed_number(tmp_path):
    new_id, known = str(uuid.uuid4()), ChargingSessionFactory(evse_id="DE*ACC*E0042*1")
    path = write(
        tmp_path,
        line(new_id, EvcoID="DE-EMP-C12345678-X", UID="04a23bc1d2e3f4", PrintedNumber="9876 655"),
        line(known.session_id, EvcoID="DE*EMP*C87654321*Y"),
    )
    run(path, "--commit")
    created = ChargingSession.objects.get(session_id=new_id)
    assert identification_of(created) == ("DE-EMP-C12345678-X", "04a23bc1d2e3f4", "9876 655")
    assert identification_of(known)[0] == "DE*EMP*C87654321*Y"
    update = AuditRecord.objects.filter(event_type=Event.SESSION_UPDATED, charging_session=known).get()
    assert update.data["changes"]["contract_id"] == ["", "DE*EMP*C87654321*Y"]


@pytest.mark.django_db
def test_the_feed_may_not_change_a_contract_id_but_may_respell_it(tmp_path):
    known = ChargingSessionFactory(
        evse_id="DE*ACC*E0042*1",
        contract_id="DE-EMP-C12345678-X",
        emp_partner_session_id="EMP-42",
        started_at=datetime(2026, 1, 5, 9, tzinfo=UTC),
    )
    _, err = run_failing(write(tmp_path, line(known.session_id, EvcoID="DE-EMP-C99999999-Z")), "--commit")
    assert "line 1: EvcoID: 'DE-EMP-C99999999-Z' differs from 'DE-EMP-C12345678-X'" in err
    out, _ = run(write(tmp_path, line(known.session_id, EvcoID="deempc12345678x"), name="b.jsonl"), "--commit")
    assert "unchanged" in out
    assert identification_of(known)[0] == "DE-EMP-C12345678-X"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"EvcoID": 123}, "EvcoID: must be a string"),
        ({"EvcoID": "X" * 51}, "EvcoID: longer than 50 characters"),
        ({"UID": " "}, "UID: empty"),
        ({"PrintedNumber": "1" * 151}, "PrintedNumber: longer than 150 characters"),
    ],
)
def test_bad_identification_in_the_feed_is_a_bad_line(tmp_path, fields, message):
    _, err = run_failing(write(tmp_path, line(**fields)), "--commit")
    assert message in err


# --- every lookup uses an index ------------------------------------------------------------------

# Each way of naming a session, and a query for it (the lookups of `selectors.session_lookups`).
LOOKUP_QUERIES = {
    "session_id": "1df4fad6",
    "evse_id": "de acc e7260",
    "emp_partner_session_id": "emp-abc-42",
    "cpo_partner_session_id": "cpo-xyz-7",
    "contract_id": "DE-EMP-C12345678",
    "card_uid": "04:a2:3b:c1:d2:e3:f4",
    "printed_number": "9876 655",
    "case_reference": "T-4711",
}


def plan(queryset) -> str:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # A tiny test table is cheaper to scan: make the planner show whether an index *can* serve it.
            cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", LOOKUP_QUERIES)
def test_each_lookup_is_an_index_search(kind, driver_session):
    lookups = selectors.session_lookups(LOOKUP_QUERIES[kind])
    assert kind in lookups, f"{LOOKUP_QUERIES[kind]!r} makes no {kind} lookup: {sorted(lookups)}"
    text = plan(lookups[kind])
    if connection.vendor == "sqlite":
        assert "USING" in text and "INDEX" in text and "SCAN " not in text, text
    else:
        assert "Index" in text and "Seq Scan" not in text, text


@pytest.mark.django_db
def test_the_whole_search_scans_no_table(driver_session):
    text = plan(selectors.search_charging_sessions(query="DE-EMP-C12345678-X"))
    if connection.vendor == "sqlite":
        scans = [row for row in text.splitlines() if "SCAN " in row and "chargingsession" in row]
        assert not scans, text
    else:
        assert "Seq Scan" not in text, text


def test_the_bench_measures_the_driver_searches():
    source = Path(__file__).resolve().parents[1].joinpath("bench", "pages.py").read_text()
    for name in (
        "EvseID with spaces",
        "SessionID prefix",
        "contract ID",
        "card UID",
        "printed number",
        "partner session ID in lower case",
    ):
        assert name in source
