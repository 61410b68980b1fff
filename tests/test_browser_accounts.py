"""Accounts in Chromium: a supervisor sets up the second factor at the first login and logs in with a
code computed here from the key the page shows, as the phone's app would; a support admin adds an
agent, who logs in with the temporary password and chooses their own. Every page is checked with
axe-core (tests/axe.py)."""

import base64
import os
import re
import time

import pytest

from sessions import roles
from tests.axe import assert_no_violations
from tests.factories import UserFactory
from tests.test_two_factor import code_for

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop beside the live server
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, username, password="pw"):
    page.set_default_timeout(10_000)
    page.goto(live_server.url + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def log_out(page):
    page.get_by_role("button", name="Log out").first.click()
    page.get_by_role("heading", name="Log in").wait_for()


def totp_step() -> int:
    """The 30-second step an authenticator app's code is for now."""
    return int(time.time()) // 30


def totp(secret: str, step: int | None = None) -> str:
    """The code of this step (now's by default) for the key shown on the setup page."""
    key = base64.b32decode(secret.replace(" ", "") + "=" * (-len(secret.replace(" ", "")) % 8))
    return code_for(key, totp_step() if step is None else step)


def test_a_supervisor_sets_up_the_second_factor_then_logs_in_with_a_code(page, live_server, settings):
    settings.TWO_FACTOR_REQUIRED_ROLES = [roles.ADMIN, roles.SUPERVISOR]
    UserFactory(username="browser-supervisor", role=roles.SUPERVISOR)
    log_in(page, live_server, "browser-supervisor")

    # Straight to the setup: the QR code, and the key for typing in.
    page.get_by_role("heading", name="Set up two-factor authentication").wait_for()
    assert "requires a second factor" in page.locator("main").inner_text()
    assert page.get_by_role("img", name=re.compile("QR code")).is_visible()
    assert_no_violations(page, what="two-factor setup")
    page.get_by_text("Cannot scan it? Type the key instead").click()
    secret = page.locator("#totp-secret").inner_text()
    assert re.fullmatch(r"([A-Z2-7]{4} ){7}[A-Z2-7]{4}", secret)

    page.get_by_label("Code from the app").fill("123456" if totp(secret) != "123456" else "654321")
    page.get_by_role("button", name="Turn on").click()
    error = page.locator("#id_code_error")
    error.wait_for()
    assert "not right" in error.inner_text()
    assert page.get_by_label("Code from the app").get_attribute("aria-invalid") == "true"
    time.sleep(1.1)  # django-otp holds the next try for a second after a wrong code
    setup_step = totp_step()
    page.get_by_label("Code from the app").fill(totp(secret, setup_step))
    page.get_by_role("button", name="Turn on").click()

    page.get_by_role("heading", name="Two-factor authentication is on").wait_for()
    codes = page.get_by_role("list", name="Recovery codes").locator("code").all_inner_texts()
    assert len(codes) == 10
    assert_no_violations(page, what="recovery codes")
    page.get_by_role("link", name="I have saved them: continue").click()
    page.get_by_role("heading", name="Charging sessions").wait_for()

    # The next login asks for the code after the password.
    log_out(page)
    log_in(page, live_server, "browser-supervisor")
    page.get_by_role("heading", name="Your code, please").wait_for()
    assert_no_violations(page, what="two-factor verify")
    # The setup used its step's code, which is never taken again: the next step's. Counted from the
    # setup's step, not from now: a setup whose code was checked just after its step ended leaves
    # django-otp's window one step back (its drift), and now's step + 1 would then be outside it
    # (as found in CI, once: the setup's code has to be checked in the step's last moments).
    page.get_by_label("Code").fill(totp(secret, setup_step + 1))
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="Charging sessions").wait_for()
    page.get_by_role("link", name="Two-factor").click()
    assert "10 of 10" in page.locator("main").inner_text()
    assert_no_violations(page, what="two-factor status")


def test_a_support_admin_adds_an_agent_who_chooses_a_password_at_the_first_login(page, live_server):
    UserFactory(username="browser-admin", role=roles.ADMIN, is_staff=True)
    log_in(page, live_server, "browser-admin")
    page.get_by_role("heading", name="Charging sessions").wait_for()
    page.get_by_role("link", name="Team").click()
    page.get_by_role("heading", name="The team").wait_for()
    assert_no_violations(page, what="team")
    page.get_by_role("link", name="Add a team member").click()
    assert_no_violations(page, what="add a team member")
    page.get_by_label("Username").fill("browser-new-agent")
    page.get_by_label("First name").fill("Nina")
    page.get_by_label("Role").select_option(label="Support agent")
    page.get_by_role("button", name="Add and show the temporary password").click()
    page.get_by_role("heading", name="browser-new-agent can log in").wait_for()
    password = page.locator(".temp-password code").inner_text()
    assert_no_violations(page, what="temporary password")
    page.get_by_role("link", name="browser-new-agent's page").click()
    page.get_by_role("heading", name="browser-new-agent").wait_for()
    assert_no_violations(page, what="team member")

    log_out(page)
    log_in(page, live_server, "browser-new-agent", password)
    page.get_by_role("heading", name="Change your password").wait_for()
    assert "temporary password" in page.locator("main").inner_text()
    assert_no_violations(page, what="password change")
    page.get_by_label("Old password").fill(password)
    page.get_by_label("New password", exact=True).fill("Ch4rge-the-Car!")
    page.get_by_label("New password confirmation").fill("Ch4rge-the-Car!")
    page.get_by_role("button", name="Change password").click()
    page.get_by_role("heading", name="Charging sessions").wait_for()
    assert "Your password was changed" in page.locator("main").inner_text()
