"""Issue 13 hardening: the proxy's HTTPS header only from trusted proxies, 403s in one log line,
and a lockout that also slows guessing one username from many addresses."""

from __future__ import annotations

import logging

from django.test import Client

from sessions import roles
from tests.factories import ChargingSessionFactory, UserFactory

UNTRUSTED = "203.0.113.9"


# --- X-Forwarded-Proto -----------------------------------------------------------------------------


def _taken_for_https(remote_addr: str) -> bool:
    """Whether Django took the request for HTTPS: HSTS is only sent on secure requests."""
    response = Client().get("/login/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR=remote_addr)
    return "Strict-Transport-Security" in response


def test_the_https_header_from_an_untrusted_address_is_ignored(db, settings):
    settings.DJANGO_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert not _taken_for_https(UNTRUSTED)
    # Written as an IPv4-mapped IPv6 address, an untrusted client is still untrusted.
    assert not _taken_for_https("::ffff:198.51.100.7")


def test_the_https_header_from_a_trusted_proxy_is_honoured(db, settings):
    settings.DJANGO_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert _taken_for_https("10.1.2.3")
    settings.DJANGO_TRUSTED_PROXIES = []  # no proxy configured: nobody is believed
    assert not _taken_for_https("10.1.2.3")


def test_the_default_trusts_only_a_proxy_on_this_host(settings):
    assert settings.DJANGO_TRUSTED_PROXIES == ["127.0.0.0/8", "::1/128"]
    assert settings.MIDDLEWARE[0] == "sessions.proxy.TrustedProxyHeaderMiddleware"


def test_behind_a_trusted_proxy_the_lockout_sees_the_clients_address(settings, rf):
    from sessions.proxy import client_ip

    settings.DJANGO_TRUSTED_PROXIES = ["10.0.0.0/8"]
    via_proxy = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.4, 10.0.0.9")
    assert client_ip(via_proxy) == "198.51.100.4"  # the rightmost hop not a proxy; the left is the client's claim
    direct = rf.get("/", REMOTE_ADDR=UNTRUSTED, HTTP_X_FORWARDED_FOR="198.51.100.4")
    assert client_ip(direct) == UNTRUSTED


# --- 403s: one line, no traceback ------------------------------------------------------------------


def test_a_403_is_logged_in_one_line_with_user_path_and_permission(db, caplog):
    auditor = UserFactory(username="auditor-403", role=roles.AUDITOR)
    charging_session = ChargingSessionFactory()
    client = Client()
    client.force_login(auditor)
    caplog.set_level(logging.WARNING, logger="django.request")
    path = f"/sessions/{charging_session.pk}/stop/"
    response = client.post(path, {"reason": "DRIVER_ASKED"})
    assert response.status_code == 403
    forbidden = [record for record in caplog.records if record.name == "django.request"]
    assert len(forbidden) == 1
    line = forbidden[0].getMessage()
    assert line == (f"Forbidden: user=auditor-403 path={path} permission=charging_sessions.request_remote_stop")
    assert forbidden[0].exc_info is None and "Traceback" not in caplog.text
    assert "\n" not in caplog.text.strip()


def test_a_403_without_a_permission_check_names_the_reason(db, caplog):
    client = Client()
    client.force_login(UserFactory(username="agent-403", role=roles.AGENT))
    caplog.set_level(logging.WARNING, logger="django.request")
    assert client.get("/team/").status_code == 403
    [record] = [record for record in caplog.records if record.name == "django.request"]
    assert record.getMessage() == (
        "Forbidden: user=agent-403 path=/team/ permission=support admins only (team management)"
    )


# --- guessing one username from many addresses -----------------------------------------------------


def _login(username: str, password: str, address: str):
    return Client(REMOTE_ADDR=address).post("/login/", {"username": username, "password": password})


def test_guessing_one_username_from_many_addresses_is_slowed_down(db, settings):
    UserFactory(username="carol")  # password "pw"
    limit = settings.AXES_USERNAME_FAILURE_LIMIT
    assert limit > settings.AXES_FAILURE_LIMIT
    for attempt in range(limit - 1):  # one guess from each of many addresses: no pair is locked
        assert _login("carol", f"guess-{attempt}", f"198.51.100.{attempt + 1}").status_code == 200
    response = _login("carol", "guess-last", "198.51.100.250")
    assert response.status_code == 429  # the username's limit is reached
    assert "from many network addresses" in response.content.decode()
    # Locked for unknown addresses, right password or not.
    assert _login("carol", "pw", "198.51.100.251").status_code == 429


def test_the_owner_still_logs_in_from_an_address_they_used_before(db, settings):
    UserFactory(username="dave")  # password "pw"
    assert _login("dave", "pw", "192.0.2.10").status_code == 302  # dave's usual desk
    for attempt in range(settings.AXES_USERNAME_FAILURE_LIMIT):
        _login("dave", f"guess-{attempt}", f"198.51.100.{attempt + 1}")
    assert _login("dave", "pw", "198.51.100.252").status_code == 429  # a new address: locked
    assert _login("dave", "pw", "192.0.2.10").status_code == 302  # his desk: in
    # ...but a guesser there is still held by the lockout per username and address.
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login("dave", "guess", "192.0.2.10")
    assert _login("dave", "pw", "192.0.2.10").status_code == 429


def test_the_per_username_limit_can_be_turned_off(db, settings):
    settings.AXES_USERNAME_FAILURE_LIMIT = 0
    UserFactory(username="erin")
    for attempt in range(25):
        assert _login("erin", f"guess-{attempt}", f"198.51.100.{attempt + 1}").status_code == 200
    assert _login("erin", "pw", "198.51.100.200").status_code == 302
