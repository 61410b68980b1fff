import os
import shutil

import pytest

from tests import servers

from sessions import roles
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
    with servers.celery_worker(broker_url=redis_url, database_url=database_url,
                               oicp_base_url=simulator.url,
                               extra_env={"OICP_RETRY_BACKOFF_SECONDS": "0.2", "OICP_MAX_ATTEMPTS": "2"}) as proc:
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

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not shutil.which("chromium"):
        message = "Debian's chromium is not installed; `make test` installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}
