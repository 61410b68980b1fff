"""The second factor: TOTP authenticators and recovery codes (django-otp), mandatory per role.

Codes are computed in the test from the device's key, as the phone's app would.
"""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
from django.test import Client
from django_otp.oath import hotp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from sessions import roles
from sessions.models import AuditRecord
from tests.factories import UserFactory
from tests.test_security import _production

Event = AuditRecord.EventType
REQUIRED = [roles.ADMIN, roles.SUPERVISOR]


@pytest.fixture
def required(settings):
    settings.TWO_FACTOR_REQUIRED_ROLES = REQUIRED
    return settings


def _login(client: Client, username: str, password: str = "pw"):
    return client.post("/login/", {"username": username, "password": password})


def code_for(key: bytes, step: int) -> str:
    return f"{hotp(key, step, digits=6):06d}"


def current_code(key: bytes, offset: int = 0) -> str:
    return code_for(key, int(time.time()) // 30 + offset)


def next_unused_code(device: TOTPDevice) -> str:
    """The phone's next code: a code is accepted once, so a test that logs in again uses the next step."""
    device.refresh_from_db()
    return code_for(device.bin_key, max(device.last_t + 1, int(time.time()) // 30))


def _enrol(client: Client, next_url: str = "") -> tuple[TOTPDevice, list[str]]:
    page = client.get("/accounts/two-factor/setup/" + (f"?next={next_url}" if next_url else ""))
    assert page.status_code == 200
    secret = re.search(r'data-copy="([A-Z2-7]+)" aria-label="Copy the key"', page.content.decode()).group(1)
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    response = client.post("/accounts/two-factor/setup/", {"code": current_code(key), "next": next_url})
    assert response.status_code == 200, response
    codes = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", response.content.decode())
    device = TOTPDevice.objects.get(confirmed=True, key=key.hex())
    return device, codes


# --- defaults per environment ---------------------------------------------------------------------


def test_the_sandbox_requires_no_second_factor_so_the_demo_stays_two_commands_from_a_stop(settings):
    assert settings.PORTAL_ENVIRONMENT == "SANDBOX"
    assert settings.TWO_FACTOR_REQUIRED_ROLES == []


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({}, ["Support admin", "Supervisor", "Superuser"]),  # QA: a real Hubject system
        ({"OICP_BASE_URL": "https://service.hubject.com"}, ["Support admin", "Supervisor", "Superuser"]),
        (
            {"TWO_FACTOR_REQUIRED_ROLES": "Support agent,Support admin,Supervisor,Auditor"},
            ["Support agent", "Support admin", "Supervisor", "Auditor"],
        ),
        ({"TWO_FACTOR_REQUIRED_ROLES": ""}, []),
    ],
)
def test_outside_the_sandbox_supervisors_admins_and_superusers_need_a_second_factor(extra, expected):
    code = (
        "import django, json; from django.conf import settings; django.setup(); "
        "print(json.dumps(settings.TWO_FACTOR_REQUIRED_ROLES))"
    )
    result = _production(["-c", code], **extra)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


def test_a_misspelt_role_stops_the_portal_from_starting():
    result = _production(["-c", "import django; django.setup()"], TWO_FACTOR_REQUIRED_ROLES="Supervisors")
    assert result.returncode != 0 and "TWO_FACTOR_REQUIRED_ROLES" in result.stderr


# --- enrolment at the first login, then a code at every login --------------------------------------


def test_a_supervisor_sets_up_the_second_factor_at_the_first_login_then_gives_a_code_every_time(db, required):
    supervisor = UserFactory(username="sup", role=roles.SUPERVISOR, is_staff=True)
    client = Client()
    assert _login(client, "sup")["Location"] == "/"
    # No page, fragment or admin page before the second factor is set up.
    response = client.get("/stops/")
    assert response.status_code == 302 and response["Location"] == "/accounts/two-factor/setup/?next=%2Fstops%2F"
    assert client.get("/admin/")["Location"].startswith("/accounts/two-factor/setup/")
    assert client.post("/audit/export/start/", {"format": "csv"})["Location"] == "/accounts/two-factor/setup/"
    fragment = client.get("/", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 204 and fragment["HX-Redirect"] == "/accounts/two-factor/setup/"

    page = client.get("/accounts/two-factor/setup/?next=/stops/")
    text = page.content.decode()
    assert "Your role requires a second factor" in text
    assert re.search(r'<div class="qr" role="img"[^>]*><svg [^>]*viewBox="[^"]+"', text)  # the QR code: inline SVG
    assert "data:image" not in text  # no data: URL (the Content-Security-Policy allows images from the portal only)
    assert "no-store" in page["Cache-Control"]
    secret = re.search(r'data-copy="([A-Z2-7]+)"', text).group(1)
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    wrong = client.post("/accounts/two-factor/setup/", {"code": "000000", "next": "/stops/"})
    assert "That code is not right" in wrong.content.decode()
    assert not TOTPDevice.objects.filter(confirmed=True).exists()

    time.sleep(1.1)  # django-otp throttles a device for 1 s after a wrong code
    done = client.post("/accounts/two-factor/setup/", {"code": current_code(key), "next": "/stops/"})
    codes = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", done.content.decode())
    assert len(codes) == 10 and len(set(codes)) == 10
    assert 'href="/stops/"' in done.content.decode()
    assert client.get("/stops/").status_code == 200  # this login is verified now
    assert client.get("/admin/").status_code == 200
    [enrolled] = AuditRecord.objects.filter(event_type=Event.TWO_FACTOR_ENROLLED)
    assert enrolled.actor == supervisor and enrolled.data["recovery_codes"] == 10
    trail = json.dumps(list(AuditRecord.objects.values()), default=str)
    assert secret not in trail and key.hex() not in trail and not any(code in trail for code in codes)

    # The next login: password, then the code.
    device = TOTPDevice.objects.get(user=supervisor, confirmed=True)
    client = Client()
    _login(client, "sup")
    assert client.get("/")["Location"] == "/accounts/two-factor/verify/?next=%2F"
    assert client.get("/accounts/two-factor/setup/")["Location"].startswith("/accounts/two-factor/verify/")
    response = client.post("/accounts/two-factor/verify/", {"code": next_unused_code(device), "next": "/stops/"})
    assert response.status_code == 302 and response["Location"] == "/stops/"
    assert client.get("/").status_code == 200


def test_a_code_is_refused_when_wrong_used_already_or_guessed_too_fast(db, required):
    supervisor = UserFactory(username="sup-w", role=roles.SUPERVISOR)
    client = Client()
    _login(client, "sup-w")
    device, _ = _enrol(client)
    used = code_for(device.bin_key, device.last_t)
    client = Client()
    _login(client, "sup-w")
    response = client.post("/accounts/two-factor/verify/", {"code": used})
    assert "was used already" in response.content.decode()
    response = client.post("/accounts/two-factor/verify/", {"code": next_unused_code(device)})
    assert "Too many wrong codes: wait" in response.content.decode()  # the right code, too soon
    assert client.get("/")["Location"].startswith("/accounts/two-factor/verify/")
    time.sleep(2.1)
    assert client.post("/accounts/two-factor/verify/", {"code": next_unused_code(device)}).status_code == 302
    assert client.get("/").status_code == 200
    assert supervisor.is_active


def test_a_recovery_code_logs_in_once_and_is_audited(db, required):
    admin = UserFactory(username="adm-r", role=roles.ADMIN)
    client = Client()
    _login(client, "adm-r")
    _, codes = _enrol(client)

    client = Client()
    _login(client, "adm-r")
    response = client.post("/accounts/two-factor/verify/", {"code": codes[3].upper()[:4] + " " + codes[3][4:]})
    assert response.status_code == 302
    assert "9 left" in client.get("/").content.decode()
    [used] = AuditRecord.objects.filter(event_type=Event.TWO_FACTOR_RECOVERY_USED)
    assert used.actor == admin and used.data == {"user_id": admin.pk, "username": "adm-r", "codes_left": 9}
    assert codes[3] not in json.dumps(list(AuditRecord.objects.values()), default=str)

    again = Client()
    _login(again, "adm-r")
    response = again.post("/accounts/two-factor/verify/", {"code": codes[3]})
    assert "That code is not right" in response.content.decode()


def test_new_recovery_codes_replace_the_old_ones(db, required):
    admin = UserFactory(username="adm-n", role=roles.ADMIN)
    client = Client()
    _login(client, "adm-n")
    _, old_codes = _enrol(client)
    response = client.post("/accounts/two-factor/recovery-codes/")
    new_codes = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", response.content.decode())
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    assert set(StaticToken.objects.filter(device__user=admin).values_list("token", flat=True)) == set(new_codes)
    assert AuditRecord.objects.filter(event_type=Event.TWO_FACTOR_CODES_RENEWED, actor=admin).count() == 1


# --- roles that do not require it ------------------------------------------------------------------


def test_an_agent_needs_no_second_factor_but_may_turn_it_on_and_off(db, required):
    agent = UserFactory(username="agent-2fa", role=roles.AGENT)
    client = Client()
    _login(client, "agent-2fa")
    assert client.get("/").status_code == 200  # not required for agents
    page = client.get("/accounts/two-factor/").content.decode()
    assert "Off" in page and "Set up two-factor authentication" in page
    device, _ = _enrol(client)

    client = Client()
    _login(client, "agent-2fa")
    assert client.get("/")["Location"].startswith("/accounts/two-factor/verify/")  # on, so asked for
    client.post("/accounts/two-factor/verify/", {"code": next_unused_code(device)})
    client.post("/accounts/two-factor/turn-off/")
    assert not TOTPDevice.objects.filter(user=agent).exists() and not StaticDevice.objects.filter(user=agent).exists()
    assert AuditRecord.objects.filter(event_type=Event.TWO_FACTOR_DISABLED, actor=agent).count() == 1
    client = Client()
    _login(client, "agent-2fa")
    assert client.get("/").status_code == 200


def test_a_required_role_cannot_turn_it_off(db, required):
    supervisor = UserFactory(username="sup-off", role=roles.SUPERVISOR)
    client = Client()
    _login(client, "sup-off")
    _enrol(client)
    assert b"cannot be turned off" in client.get("/accounts/two-factor/").content
    client.post("/accounts/two-factor/turn-off/")
    assert TOTPDevice.objects.filter(user=supervisor, confirmed=True).exists()
    assert not AuditRecord.objects.filter(event_type=Event.TWO_FACTOR_DISABLED).exists()


# --- a support admin resets a lost phone -----------------------------------------------------------


def test_a_support_admin_resets_a_colleagues_second_factor_who_sets_it_up_again(db, required):
    admin = UserFactory(username="adm-boss", role=roles.ADMIN)
    colleague = UserFactory(username="adm-lost", role=roles.ADMIN)
    colleague_client = Client()
    _login(colleague_client, "adm-lost")
    _enrol(colleague_client)
    assert colleague_client.get("/").status_code == 200

    admin_client = Client()
    _login(admin_client, "adm-boss")
    _enrol(admin_client)
    page = admin_client.get(f"/team/{colleague.pk}/").content.decode()
    assert "Reset second factor" in page and "On (10 recovery codes left)" in page
    response = admin_client.post(f"/team/{colleague.pk}/two-factor-reset/")
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=colleague).exists()
    assert not StaticDevice.objects.filter(user=colleague).exists()
    [reset] = AuditRecord.objects.filter(event_type=Event.TWO_FACTOR_RESET)
    assert reset.actor == admin and reset.data == {"user_id": colleague.pk, "username": "adm-lost"}
    # The colleague's open login no longer counts as verified: their role sends them to set it up again.
    page = colleague_client.get("/", follow=True)
    assert page.redirect_chain[-1][0] == "/accounts/two-factor/setup/"
    assert b"Set up two-factor authentication" in page.content
    assert colleague_client.get("/stops/")["Location"].startswith("/accounts/two-factor/setup/")
