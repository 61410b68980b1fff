"""Nobody let in: login everywhere, CSRF on every form, HTTPS-only settings, login throttling,
secrets that never leak, and a clean `manage.py check --deploy`.

Per-role permissions are tests/test_permissions_matrix.py; this module is about the doors.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import responses
from django.core.management import call_command
from django.test import Client
from django.urls import URLResolver, get_resolver
from django.utils import timezone

from sessions import services
from sessions.models import AuditRecord, RemoteStopRequest, StopReason
from sessions.stops.services import sending as stop_services
from tests.factories import (
    ChargingSessionFactory,
    RemoteStopRequestFactory,
    UserFactory,
)

ROOT = Path(__file__).resolve().parent.parent
INBOUND_PREFIX = "/api/oicp/"
PUBLIC = {"/login/", "/healthz", "/admin/login/", "/favicon.ico"}  # the favicon (the static SVG)
LOGIN_PAGES = {"/login/", "/admin/login/"}


def _sample_path(route: str) -> str:
    """A concrete path for a URL pattern: converters and regex groups filled with sample values."""
    route = re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: "DE*ACC" if m.group(2) == "operator_id" else "1", route)
    route = re.sub(r"\(\?P<\w+>([^)]*)\)", lambda m: m.group(1).split("|")[0] if "|" in m.group(1) else "x", route)
    return "/" + route.replace("^", "").replace("$", "")


def all_paths() -> list[str]:
    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield _sample_path(prefix + str(pattern.pattern))

    return sorted(set(walk(get_resolver().url_patterns)))


def _redirects_to_login(response) -> bool:
    return response.status_code == 302 and urlsplit(response["Location"]).path in LOGIN_PAGES


# --- login required everywhere ------------------------------------------------------------------


def test_every_page_needs_a_login_except_the_login_page_health_check_and_inbound_oicp(db):
    client = Client()
    paths = all_paths()
    assert {"/", "/sessions/1/stop/", "/stops/1/status/", "/admin/", "/healthz"} <= set(paths)
    open_doors = []
    for path in paths:
        response = client.get(path)
        if response.status_code == 405:  # POST-only views
            response = client.post(path)
        if path.startswith(INBOUND_PREFIX):
            # Hubject's pushes are machine calls (built elsewhere); they must never bounce to a login page.
            assert not _redirects_to_login(response), path
        elif path in PUBLIC:
            assert response.status_code in (200, 503), (path, response.status_code)
        else:
            # Anonymous visitors end on a login page (admin's logout goes via the admin index first).
            hops = 0
            while response.status_code == 302 and not _redirects_to_login(response) and hops < 3:
                response, hops = client.get(response["Location"]), hops + 1
            if not _redirects_to_login(response):
                open_doors.append((path, response.status_code))
    assert open_doors == []


# --- CSRF on every form -----------------------------------------------------------------------------


def test_every_post_without_a_csrf_token_is_refused(db):
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    refused, accepted = [], []
    for path in all_paths():
        if path.startswith(INBOUND_PREFIX):
            continue  # machine endpoints authenticate differently (built and tested elsewhere)
        response = client.post(path, {"reason": StopReason.DRIVER_ASKED, "reason_text": "x"})
        (refused if response.status_code == 403 and b"CSRF" in response.content else accepted).append(path)
    assert accepted == []
    # The forms that change something are among them, of course.
    assert {
        "/sessions/1/stop/",
        "/stops/1/resend/",
        "/sessions/1/close/",
        "/logout/",
        "/login/",
        "/audit/export/start/",
        "/admin/charging_sessions/chargingsession/",
    } <= set(refused)


def test_the_same_post_with_the_token_goes_through(db, no_broker):
    from sessions import roles

    agent = UserFactory(username="agent-csrf", role=roles.AGENT)
    charging_session = ChargingSessionFactory()
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent)
    page = client.get(f"/sessions/{charging_session.pk}/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()
    response = client.post(
        f"/sessions/{charging_session.pk}/stop/", {"reason": StopReason.DRIVER_ASKED, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert RemoteStopRequest.objects.filter(charging_session=charging_session).count() == 1


# --- HTTPS-only settings and headers with DEBUG off -------------------------------------------------

PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "k3y-" + "x7Qp9LmZ2vR8sT4w" * 4,  # long and varied: passes security.W009
    "AUDIT_CHAIN_KEY": "chain-" + "Zq8w3Lk5Vn2Rt7Ys" * 3,
    "DJANGO_ALLOWED_HOSTS": "support.example.com",
    "OICP_BASE_URL": "https://service-qa.hubject.com",
    "OICP_PROVIDER_ID": "DE-ABC",
    "OICP_CLIENT_CERT": "/etc/portal/hubject-qa.crt",
    "OICP_CLIENT_KEY": "/etc/portal/hubject-qa.key",
}
_SCRUB = ["DJANGO_", "OICP_", "PORTAL_", "DATABASE_URL", "CELERY_", "CACHE_URL", "AUDIT_"]


def _production(args: list[str], **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not any(k.startswith(p) for p in _SCRUB)}
    env.update(
        PRODUCTION_ENV,
        PORTAL_ENV_FILE="/nonexistent/.env",
        DJANGO_SETTINGS_MODULE="portal.settings",
        DATABASE_URL="sqlite:////tmp/portal-deploy-check.sqlite3",
        **extra,
    )
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_production_settings_are_https_only():
    names = [
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SESSION_COOKIE_HTTPONLY",
        "CSRF_COOKIE_HTTPONLY",
        "SESSION_COOKIE_SAMESITE",
        "CSRF_COOKIE_SAMESITE",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_CONTENT_TYPE_NOSNIFF",
        "SECURE_REFERRER_POLICY",
        "SECURE_PROXY_SSL_HEADER",
        "X_FRAME_OPTIONS",
        "DEBUG",
    ]
    code = (
        "import django, json; from django.conf import settings; django.setup(); "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    )
    result = _production(["-c", code])
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SAMESITE": "Lax",
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "SECURE_REFERRER_POLICY": "same-origin",
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "X_FRAME_OPTIONS": "DENY",
        "DEBUG": False,
    }


def test_https_responses_carry_the_security_headers(db):
    response = Client().get("/login/", secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.parametrize(
    "extra, silenced",
    [
        ({}, 2),  # TLS and the HTTP redirect at the proxy: W008 and W021 silenced, with their reasons in settings
        ({"DJANGO_SECURE_SSL_REDIRECT": "true", "DJANGO_SECURE_HSTS_PRELOAD": "true"}, 0),
    ],
)
def test_check_deploy_is_clean_with_production_settings(extra, silenced):
    result = _production(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"System check identified no issues ({silenced} silenced)." in result.stdout


# --- login throttling (django-axes) -----------------------------------------------------------------


def _login(client: Client, username: str, password: str):
    return client.post("/login/", {"username": username, "password": password})


def test_repeated_failed_logins_lock_that_username_from_that_address_until_axes_reset(db, settings, caplog):
    UserFactory(username="alice")  # password "pw"
    UserFactory(username="bob")
    client = Client()
    for attempt in range(1, settings.AXES_FAILURE_LIMIT):
        response = _login(client, "alice", "not-her-password")
        assert response.status_code == 200, attempt  # the form again, with its error
    assert _login(client, "alice", "not-her-password").status_code == 429  # the limit is reached

    response = _login(client, "alice", "pw")  # even the right password is refused now
    assert response.status_code == 429
    text = response.content.decode()
    assert "Login temporarily locked" in text
    assert f"blocked for {settings.AXES_COOLOFF_TIME.seconds // 60} minutes" in text
    assert "_auth_user_id" not in client.session
    # The same address may still log in as someone else (lockout is by username and address).
    assert _login(Client(), "bob", "pw").status_code == 302
    assert "not-her-password" not in caplog.text

    call_command("axes_reset")
    assert _login(client, "alice", "pw").status_code == 302


# --- secrets never appear in logs, audit records or exports -----------------------------------------

KEY_MARKER = "KEY-MARKER-7f3a"
CERT_MARKER = "CERT-MARKER-91bc"
SECRET_MARKER = "SECRET-MARKER-c4d2e8"


def test_the_client_key_and_secrets_never_reach_logs_audit_records_or_exports(
    db, settings, caplog, tmp_path, monkeypatch
):
    settings.SECRET_KEY = SECRET_MARKER + "-" + "s" * 50
    settings.OICP_BASE_URL = "https://hubject.test"
    settings.OICP_CLIENT_KEY = f"/etc/portal/{KEY_MARKER}.key"
    settings.OICP_CLIENT_CERT = f"/etc/portal/{CERT_MARKER}.crt"
    monkeypatch.setattr(stop_services, "_clients", threading.local())  # clients are built per thread, once
    caplog.set_level(logging.DEBUG)
    url = "https://hubject.test/api/oicp/charging/v21/providers/DE-EMP/authorize-remote/stop"

    accepted = RemoteStopRequestFactory()
    rejected = RemoteStopRequestFactory()
    with responses.RequestsMock() as mock:  # the exchange itself, as HBS would answer
        mock.post(url, json={"Result": True, "StatusCode": {"Code": "000"}}, headers={"Process-ID": "p-1"})
        services.send_remote_stop(stop_request_id=accepted.pk)
        mock.post(url, status=401, json={"StatusCode": {"Code": "017", "Description": "Unauthorized"}})
        services.send_remote_stop(stop_request_id=rejected.pk)
    # And for real: requests fails on the missing certificate and key files, naming their paths.
    missing_files = RemoteStopRequestFactory()
    services.send_remote_stop(stop_request_id=missing_files.pk)
    missing_files.refresh_from_db()
    assert missing_files.state == RemoteStopRequest.State.FAILED
    assert "<client certificate file>" in missing_files.last_error  # says what failed, not where

    # A supervisor's export of the same audit log, in every format that is text.
    today = timezone.localdate().isoformat()
    exported = []
    for export_format in ("csv", "jsonl"):
        output = tmp_path / f"audit.{export_format}"
        call_command("export_audit", "--from", today, "--to", today, "--format", export_format, "--output", str(output))
        exported.append(output.read_text(encoding="utf-8"))
    assert all(str(accepted.correlation_id) in text for text in exported)  # the exports hold the exchange

    haystacks = {
        "logs": caplog.text + "\n".join(str(record.__dict__) for record in caplog.records),
        "audit records": json.dumps(list(AuditRecord.objects.values()), default=str),
        "stop requests": json.dumps(list(RemoteStopRequest.objects.values()), default=str),
        "exports": "\n".join(exported),
    }
    for name, text in haystacks.items():
        for marker in (KEY_MARKER, CERT_MARKER, SECRET_MARKER):
            assert marker not in text, f"{marker} leaked into the {name}"
    assert AuditRecord.objects.filter(event_type=AuditRecord.EventType.STOP_SENDING).count() == 3
