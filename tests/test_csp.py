"""The strict Content-Security-Policy (django-csp; portal/settings.py: CONTENT_SECURITY_POLICY) on every
response, and pages that need nothing it forbids: no inline <script> (a JSON data block aside), no <style>,
no style="" attribute, no on*= handler, no javascript: URL, no data: image.

- every URL of the portal and the Django admin (tests/test_security.py's sweep), logged in or not, and
  the inbound OICP endpoints' JSON answers, the 403, 404, 500, CSRF-failure and lockout pages carry the
  exact policy;
- the HTML of every page each role opens (the pages tests/test_browser_axe.py visits), the 2FA pages
  (setup with its QR code, verify, recovery codes), login, the team's temporary password and every
  Django admin list, add and change page has nothing inline.

In the browser, every browser test fails on a CSP violation (tests/conftest.py: csp_violations); the
last test here proves that guard catches one.
"""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import path, reverse
from django_otp.oath import hotp
from django_otp.plugins.otp_totp.models import TOTPDevice

import portal.urls as portal_urls
from sessions import roles
from tests.factories import UserFactory
from tests.test_browser_axe import pages_for, world  # noqa: F401 (world is a fixture)
from tests.test_security import all_paths

STRICT_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "connect-src": ["'self'"],
    "font-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}


def policy(response) -> dict[str, list[str]]:
    """The response's Content-Security-Policy, directive by directive (django-csp's order varies)."""
    header = response.get("Content-Security-Policy", "")
    directives = {}
    for part in header.split(";"):
        if part.strip():
            name, *values = part.split()
            directives[name] = values
    return directives


class _InlineFinder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name, value in attrs:
            if name == "style":
                self.found.append(f'style="{value}" on <{tag}>')
            elif name.startswith("on"):
                self.found.append(f"{name}= handler on <{tag}>")
            elif name in ("href", "src", "action", "formaction") and value:
                if value.strip().lower().startswith("javascript:"):
                    self.found.append(f"{name}=javascript: on <{tag}>")
                elif tag == "img" and value.strip().lower().startswith("data:"):
                    self.found.append(f"data: image on <{tag}>")
        if tag == "style":
            self.found.append("<style> element")
        if tag == "script" and not attributes.get("src") and attributes.get("type") != "application/json":
            self.found.append(f"inline <script {attributes}>")

    handle_startendtag = handle_starttag


def inline_code(html: str) -> list[str]:
    """What the strict policy would block in this HTML (empty: nothing)."""
    finder = _InlineFinder()
    finder.feed(html)
    finder.close()
    # The same, as plain text: what the parser might not call a tag.
    if 'style="' in html or "style='" in html:
        finder.found.append("the text style=")
    if re.search(r"<style[\s>]", html):
        finder.found.append("the text <style")
    if re.search(r"<[a-z][^>]*\son[a-z]+\s*=", html):
        finder.found.append("an on*= attribute")
    return finder.found


def check(response, what: str, status: int = 200) -> list[str]:
    """Problems with one answer: its status, its policy, and (HTML) anything inline."""
    problems = []
    if response.status_code != status:
        problems.append(f"{what}: HTTP {response.status_code}, expected {status}")
    if policy(response) != STRICT_POLICY:
        problems.append(f"{what}: Content-Security-Policy {response.get('Content-Security-Policy')!r}")
    if response.get("Content-Type", "").startswith("text/html") and not getattr(response, "streaming", False):
        problems += [f"{what}: {found}" for found in inline_code(response.content.decode())]
    return problems


def test_the_checker_finds_everything_the_policy_forbids():
    html = (
        "<html><head><style>p{color:red}</style><script>alert(1)</script>"
        '<script id="data" type="application/json">{"a": 1}</script><script src="/static/x.js"></script></head>'
        '<body onload="go()"><p style="color:red">x</p><a href="javascript:go()">go</a>'
        '<img src="data:image/png;base64,AAAA" alt=""><button type="button" onclick="go()">go</button></body></html>'
    )
    found = "\n".join(inline_code(html))
    for expected in (
        "<style> element",
        "inline <script",
        "onload= handler on <body>",
        'style="color:red" on <p>',
        "href=javascript: on <a>",
        "data: image on <img>",
        "onclick= handler on <button>",
    ):
        assert expected in found
    assert found.count("inline <script") == 1  # the JSON data block and the script with src= are fine
    assert inline_code('<p class="note">A style guide; one=two is text.</p><script src="/s.js" defer></script>') == []


def test_every_url_answers_with_the_strict_policy_logged_in_or_not(db, no_broker):
    """Each path of the portal and the admin (sample ids), whatever the answer: a page, a redirect to the
    login, a 403, 404 or 405."""
    root = UserFactory(username="csp-root", is_staff=True, is_superuser=True)
    problems, answered = [], set()
    for who in ("anonymous", "superuser"):
        client = Client()
        if who == "superuser":
            client.force_login(root)
        for url in all_paths():
            response = client.get(url)
            answered.add(response.status_code)
            if policy(response) != STRICT_POLICY:
                problems.append(
                    f"{who} GET {url}: HTTP {response.status_code}, "
                    f"Content-Security-Policy {response.get('Content-Security-Policy')!r}"
                )
    assert problems == []
    assert {200, 302, 404, 405} <= answered


@pytest.mark.parametrize("role", [roles.AGENT, roles.ADMIN, roles.SUPERVISOR, roles.AUDITOR])
def test_every_page_of_every_role_has_the_policy_and_nothing_inline(db, no_broker, world, role):  # noqa: F811
    client = Client()
    client.force_login(world["users"][role])
    problems = []
    for what, url, status in pages_for(role, world):
        problems += check(client.get(url), what, status)
        if status == 200 and not url.startswith("/admin/"):
            # The same page as htmx asks for it (a fragment, or the page its hx-select picks from).
            problems += check(client.get(url, HTTP_HX_REQUEST="true"), f"{what} (htmx)", status)
    assert problems == []


def test_the_fragments_and_the_stuck_queue_have_nothing_inline(db, no_broker, world):  # noqa: F811
    client = Client()
    client.force_login(world["users"][roles.SUPERVISOR])
    stops = world["stops"]
    problems = []
    for state, stop in stops.items():
        problems += check(
            client.get(reverse("charging_sessions:stop-status", args=[stop.pk]), HTTP_HX_REQUEST="true"),
            f"stop status fragment, {state}",
        )
    problems += check(client.get(reverse("charging_sessions:audit-chain-status")), "audit chain status")
    problems += check(
        client.get(reverse("charging_sessions:audit-export") + "?part=exports", HTTP_HX_REQUEST="true"),
        "audit exports fragment",
    )
    problems += check(client.get(reverse("charging_sessions:stuck-sessions")), "stuck queue")
    for state, stop in stops.items():
        response = client.get(reverse("charging_sessions:resend-stop", args=[stop.pk]), HTTP_HX_REQUEST="true")
        problems += check(response, f"send-again dialog, {state}", response.status_code)  # 200 or a refusal
    assert problems == []


def test_the_login_lockout_and_csrf_failure_pages_have_the_policy_and_nothing_inline(db):
    UserFactory(username="csp-locked", role=roles.AGENT)
    client = Client()
    problems = check(client.get(reverse("login")), "login page")
    problems += check(client.get(reverse("admin:login")), "admin login page")
    problems += check(
        client.post(reverse("login"), {"username": "csp-locked", "password": "wrong"}), "login page with an error"
    )
    for _ in range(10):
        response = client.post(reverse("login"), {"username": "csp-locked", "password": "wrong"})
        if response.status_code == 429:
            break
    problems += check(response, "login lockout page", 429)
    csrf = Client(enforce_csrf_checks=True).post(reverse("login"), {"username": "x", "password": "y"})
    problems += check(csrf, "CSRF failure page", 403)
    assert (
        b"CSRF" in csrf.content and b"portal.css" in csrf.content
    )  # the portal's page, not Django's inline-styled one
    assert problems == []


def test_the_two_factor_pages_and_the_qr_code_have_the_policy_and_nothing_inline(db, no_broker):
    client = Client()
    client.force_login(UserFactory(username="csp-2fa-new", role=roles.SUPERVISOR))
    setup = client.get(reverse("charging_sessions:two-factor-setup"))
    problems = check(setup, "two-factor setup (QR code)")
    assert re.search(r'<div class="qr" role="img" aria-label="[^"]+"><svg [^>]*viewBox=', setup.content.decode())
    problems += check(client.get(reverse("charging_sessions:two-factor")), "two-factor status")

    user = UserFactory(username="csp-2fa", role=roles.SUPERVISOR)
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    client = Client()
    client.force_login(user)  # password given, second factor still owed
    verify_url = reverse("charging_sessions:two-factor-verify")
    problems += check(client.get(verify_url), "two-factor verify")
    problems += check(client.post(verify_url, {"code": "000000"}), "two-factor verify, wrong code")
    time.sleep(1.1)  # django-otp throttles a device for 1 s after a wrong code
    code = f"{hotp(device.bin_key, int(time.time()) // 30, digits=6):06d}"
    assert client.post(verify_url, {"code": code}).status_code == 302
    problems += check(client.post(reverse("charging_sessions:two-factor-recovery-codes")), "recovery codes")
    problems += check(client.get(reverse("charging_sessions:two-factor")), "two-factor status, on")
    assert problems == []


def test_the_team_pages_that_answer_a_post_have_nothing_inline(db, no_broker):
    support_admin = UserFactory(username="csp-support-admin", role=roles.ADMIN)
    member = UserFactory(username="csp-member", role=roles.AGENT)
    client = Client()
    client.force_login(support_admin)
    problems = check(
        client.post(reverse("charging_sessions:team-member-new"), {"username": "", "role": ""}),
        "new member form with errors",
    )
    problems += check(
        client.post(reverse("charging_sessions:team-member-password-reset", args=[member.pk])), "temporary password"
    )
    assert problems == []


def test_every_admin_list_add_and_change_page_has_the_policy_and_nothing_inline(db, no_broker, world, rf):  # noqa: F811
    root = UserFactory(username="csp-admin-root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    device = TOTPDevice.objects.create(user=world["users"][roles.SUPERVISOR], name="phone", confirmed=True)
    request = rf.get("/admin/")
    request.user = root
    problems = check(client.get(reverse("admin:index")), "admin index")
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        name = f"admin:{opts.app_label}_{opts.model_name}"
        problems += check(client.get(reverse(f"{name}_changelist")), f"admin list {opts.label}")
        problems += check(client.get(reverse(f"{name}_changelist") + "?q=x"), f"admin list {opts.label}, searched")
        if model_admin.has_add_permission(request):
            problems += check(client.get(reverse(f"{name}_add")), f"admin add {opts.label}")
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            problems += check(client.get(reverse(f"{name}_change", args=[first.pk])), f"admin change {opts.label}")
            problems += check(client.get(reverse(f"{name}_history", args=[first.pk])), f"admin history {opts.label}")
    problems += check(
        client.get(reverse("admin:otp_totp_totpdevice_config", args=[device.pk])), "admin TOTP device QR page"
    )
    assert problems == []


def test_the_inbound_oicp_endpoints_answer_json_with_the_policy(db):
    client = Client()
    endpoints = [
        reverse("oicp-charging-notifications"),
        reverse("oicp-charge-detail-record", kwargs={"operator_id": "DE*ACC"}),
    ]
    problems = []
    for url in endpoints:
        refused = client.post(url, data="{}", content_type="application/json")  # breaks the message rules
        problems += check(refused, f"POST {url}", 400)
        problems += check(client.get(url), f"GET {url}", 405)
        assert refused["Content-Type"].startswith("application/json")
    assert problems == []


# The 500 page: a URL that fails, beside the portal's own (handler500 is Django's, rendering 500.html).
def _fails(request):
    raise RuntimeError("a bug, on purpose (tests/test_csp.py)")


urlpatterns = [path("csp-fails/", _fails), *portal_urls.urlpatterns]
handler403 = portal_urls.handler403
handler404 = portal_urls.handler404


@pytest.mark.urls("tests.test_csp")
def test_the_500_and_404_pages_have_the_policy_and_nothing_inline(db, caplog):
    client = Client(raise_request_exception=False)
    problems = check(client.get("/csp-fails/"), "500 page", 500)
    problems += check(client.get("/no-such-page/"), "404 page", 404)
    assert problems == []


# --- the browser side: the guard in tests/conftest.py catches a violation ---------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_browser_guard_catches_inline_styles_scripts_and_handlers(page, live_server, csp_violations):
    page.goto(f"{live_server.url}/login/")
    assert csp_violations.take() == []  # the login page itself is clean
    page.evaluate("""() => {
        document.body.insertAdjacentHTML("beforeend", '<p id="styled" style="color: red">styled</p>');
        const script = document.createElement("script");
        script.textContent = "window.__inlineRan = true";
        document.body.append(script);
        document.body.insertAdjacentHTML("beforeend", '<img id="handler" src="/favicon.ico" onload="window.__handlerRan = true" alt="">');
    }""")
    found: list[str] = []
    for _ in range(40):  # the events arrive asynchronously
        found += csp_violations.take()
        if len([line for line in found if "securitypolicyviolation" in line]) >= 3:
            break
        page.wait_for_timeout(50)
    text = "\n".join(found)
    chromium = text.lower()  # Chromium's own console messages ("Applying inline style violates ..." in 156)
    assert "inline style" in chromium and "inline script" in chromium and "inline event handler" in chromium
    assert "style-src-attr" in text and "script-src-elem" in text  # the page's securitypolicyviolation events
    assert page.evaluate("window.__inlineRan === undefined && window.__handlerRan === undefined")
    assert page.locator("#styled").evaluate("p => getComputedStyle(p).color") != "rgb(255, 0, 0)"
