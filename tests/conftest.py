import os
import shutil
from unittest import mock

import pytest
from django.core.cache import cache

from sessions import roles
from tests import servers
from tests.factories import ChargingSessionFactory, UserFactory


@pytest.fixture(autouse=True)
def empty_audit_anchors():
    """Each test starts with an empty database, so with no anchor of an earlier test's audit chain
    (the worker the tests start shares the directory: settings_test.py)."""
    from django.conf import settings

    (settings.AUDIT_ANCHOR_DIR / "anchors.jsonl").unlink(missing_ok=True)
    yield


@pytest.fixture(scope="session", autouse=True)
def remove_audit_anchor_dir():
    yield
    from django.conf import settings

    shutil.rmtree(settings.AUDIT_ANCHOR_DIR, ignore_errors=True)


@pytest.fixture
def no_broker():
    """The broker is outside unit tests: capture what would be enqueued instead."""
    from unittest import mock

    with mock.patch("sessions.tasks.send_remote_stop.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def agent(db):
    return UserFactory(username="agent-a", role=roles.AGENT)


@pytest.fixture
def other_agent(db):
    return UserFactory(username="agent-b", role=roles.AGENT)


@pytest.fixture
def auditor(db):
    return UserFactory(username="auditor-a", role=roles.AUDITOR)


@pytest.fixture
def charging_session(db):
    return ChargingSessionFactory()


@pytest.fixture
def agent_client(client, agent):
    client.force_login(agent)
    return client


# --- real processes, shared by the integration and browser tests (started once per session) ---


@pytest.fixture(scope="session")
def redis_url():
    with servers.redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def simulator():
    with servers.simulator_process() as sim:
        yield sim


@pytest.fixture(scope="session")
def worker(django_db_setup, django_db_blocker, redis_url, simulator):
    with django_db_blocker.unblock():
        database_url = servers.database_url_for_children()
    with servers.celery_worker(
        broker_url=redis_url,
        database_url=database_url,
        oicp_base_url=simulator.url,
        extra_env={"OICP_RETRY_BACKOFF_SECONDS": "0.2", "OICP_MAX_ATTEMPTS": "2"},
    ) as proc:
        yield proc


@pytest.fixture
def live(worker, redis_url, simulator):
    """Redis, a worker and the simulator, with the simulator reset to the test behaviours."""
    servers.point_celery_at(redis_url)
    simulator.set_behaviours(SIMULATOR_BEHAVIOURS)
    simulator.clear()
    return simulator


SIMULATOR_BEHAVIOURS = {
    "default": {"action": "accept"},
    "operators": {
        "DE*ACC": {"action": "accept"},
        "DE*SLW": {"action": "accept", "delay_seconds": 1.5},
        "DE*OFF": {"action": "reject", "code": "501"},
        "FR*ERR": {"action": "http_error", "http_status": 503},
    },
    "evses": {},
}


# --- the browser: Debian's Chromium driven by Playwright (never `playwright install`) ------------

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not shutil.which("chromium"):
        message = "Debian's chromium is not installed; `make test` installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}


# --- every browser test fails on a Content-Security-Policy violation -----------------------------
# The portal sends a strict CSP (portal/settings.py: no inline script or style, no eval, no data:
# images). Every context a browser test opens (pytest-playwright's `page`/`context`, or
# `browser.new_context()` called directly) reports what the policy blocked in two ways: Chromium's own
# console message ("Refused to apply inline style because it violates the following Content Security
# Policy directive ...") and the page's `securitypolicyviolation` event, logged by an init script. The
# test fails when there is any (pytest_runtest_call below); one that appears later fails its teardown.
# A test that provokes a violation on purpose takes it with `csp_violations.take()`.

CSP_MARK = "Content Security Policy"
CSP_REPORTER = """
document.addEventListener("securitypolicyviolation", function (event) {
  console.error("Content Security Policy violation (securitypolicyviolation event): " + event.effectiveDirective
    + " blocked " + (event.blockedURI || "?") + " in " + (event.sourceFile || document.location.href)
    + ":" + event.lineNumber + " " + (event.sample || ""));
}, true);
"""


class CspViolations:
    """What the CSP blocked in the browser contexts of one test."""

    def __init__(self):
        self.found: list[str] = []
        self.contexts: list = []

    def watch(self, context) -> None:
        context.add_init_script(script=CSP_REPORTER)
        context.on("console", self._on_console)
        self.contexts.append(context)

    def _on_console(self, message) -> None:
        if CSP_MARK in message.text or "Content-Security-Policy" in message.text:
            where = message.location.get("url") or (message.page.url if message.page else "?")
            self.found.append(f"{where}: {message.text}")

    def flush(self) -> None:
        """One round trip to every open page, so messages logged before now have arrived."""
        for context in self.contexts:
            try:
                for open_page in context.pages:
                    open_page.evaluate("0")
            except Exception:  # a closed context or a page that is navigating: nothing to wait for
                pass

    def take(self) -> list[str]:
        self.flush()
        found, self.found = self.found, []
        return found


_CSP_VIOLATIONS = pytest.StashKey[CspViolations]()


@pytest.fixture(autouse=True)
def csp_violations(request, monkeypatch):
    violations = CspViolations()
    if "browser" not in request.fixturenames:  # not a browser test: never start Chromium for it
        yield violations
        return
    browser = request.getfixturevalue("browser")
    new_context = browser.new_context

    def watched_new_context(*args, **kwargs):
        context = new_context(*args, **kwargs)
        violations.watch(context)
        return context

    monkeypatch.setattr(browser, "new_context", watched_new_context)
    request.node.stash[_CSP_VIOLATIONS] = violations
    yield violations
    late = violations.take()
    assert not late, "Content-Security-Policy violations in the browser:\n" + "\n".join(late)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    violations = item.stash.get(_CSP_VIOLATIONS, None)
    if violations is not None:
        found = violations.take()
        if found:
            pytest.fail("Content-Security-Policy violations in the browser:\n" + "\n".join(found), pytrace=False)
    return result


@pytest.fixture
def worker_mode(settings, monkeypatch):
    """Pushed messages acknowledged and queued for the workers (OICP_INBOUND_APPLY=worker), with no
    broker: the apply task's kicks are counted (the mock is yielded), not published."""
    from sessions.inbound import queue as inbound_queue

    settings.OICP_INBOUND_APPLY = "worker"
    cache.clear()
    monkeypatch.setattr(inbound_queue, "_last_kick", 0.0)
    with mock.patch("sessions.tasks.apply_inbound_messages.apply_async") as kick:
        yield kick
