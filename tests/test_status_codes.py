"""The status-code playbook: complete, well-formed, and never raising for unknown input."""

import dataclasses
import re

import pytest

from sessions.oicp.status_codes import (
    FAILURE_PLAYBOOK,
    HUBJECT_DESCRIPTIONS,
    STATUS_CODES,
    StatusCodeInfo,
    describe,
    describe_failure,
)
from sessions.stops.presenters.cards import code_meaning

AREAS = {"General codes", "Internal system codes", "Authentication codes", "Session codes", "EVSE codes"}


def _texts_filled(info: StatusCodeInfo) -> bool:
    words = code_meaning(info)  # the presenter's words for the entry
    texts = (info.description, info.area, words.meaning, words.tell_driver, words.next_step)
    return all(text.strip() for text in texts)


def test_every_hubject_code_has_an_entry_and_nothing_else():
    assert set(STATUS_CODES) == set(HUBJECT_DESCRIPTIONS)
    assert len(STATUS_CODES) == 31


@pytest.mark.parametrize("code", sorted(HUBJECT_DESCRIPTIONS))
def test_entry_is_well_formed(code):
    info = STATUS_CODES[code]
    assert isinstance(code, str) and re.fullmatch(r"[0-9]{3}", code)
    assert info.code == code
    assert info.description == HUBJECT_DESCRIPTIONS[code]
    assert info.area in AREAS
    assert _texts_filled(info)


def test_transient_codes_are_exactly_the_retryable_ones():
    assert {code for code, info in STATUS_CODES.items() if info.transient} == {"001", "002", "009", "021", "310", "320"}


def test_key_entries_give_the_right_advice():
    # Without the facts of a stop (lists, the history's timeline), a code's words must hold in every state:
    # 400 does not tell the driver the session ended (the portal may show it open), 310 promises no retry.
    # The state-aware card is sessions.stops.presenters's (tests/test_stop_advice.py).
    words = {code: code_meaning(info) for code, info in STATUS_CODES.items()}  # the presenter's words
    assert "CDR" in words["400"].meaning and "CDR" in words["400"].next_step
    assert "does not know this session" in words["400"].meaning
    assert "ended" not in words["400"].tell_driver
    assert "SessionID" in words["400"].next_step and "hotline" in words["400"].next_step
    assert "60-second" in words["310"].meaning
    assert "retr" not in words["310"].next_step and "trying again" not in words["310"].tell_driver
    assert "send a new stop" in words["310"].next_step and "hotline" in words["310"].next_step
    assert "offline" in words["501"].meaning and "CPO" in words["501"].next_step
    assert "certificate" in words["017"].meaning and "not your fault" in words["017"].tell_driver
    assert "operators" in words["017"].next_step
    assert "correlation id" in words["022"].next_step


def test_info_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        STATUS_CODES["000"].transient = True  # type: ignore[misc]


@pytest.mark.parametrize("code", ["999", "", None, "0", "400 ", "abc"])
def test_describe_unknown_code_does_not_raise(code):
    info = describe(code)
    assert info.code == (code or "")
    assert info.transient is False
    assert _texts_filled(info)


def test_describe_known_code_returns_the_table_entry():
    assert describe("400") is STATUS_CODES["400"]


def test_failure_playbook_has_all_kinds():
    assert set(FAILURE_PLAYBOOK) == {
        "timeout",
        "connection",
        "http_error",
        "unreadable",
        "tls",
        "validation",
        "unauthorized",
        "worker_lost",
        "session_ended",
    }
    for info in FAILURE_PLAYBOOK.values():
        assert info.code == ""
        assert _texts_filled(info)
    assert FAILURE_PLAYBOOK["tls"].transient is False
    assert FAILURE_PLAYBOOK["timeout"].transient is True


@pytest.mark.parametrize("kind", ["nonsense", "", None])
def test_describe_failure_unknown_kind_does_not_raise(kind):
    info = describe_failure(kind)
    assert info.code == "" and _texts_filled(info)


def test_describe_failure_known_kind():
    assert describe_failure("timeout") is FAILURE_PLAYBOOK["timeout"]
