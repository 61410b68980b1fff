"""Settings come from the environment; production refuses to start half-configured."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAMES = [
    "DJANGO_SECRET_KEY",
    "DJANGO_DEBUG",
    "OICP_BASE_URL",
    "OICP_PROVIDER_ID",
    "OICP_CLIENT_CERT",
    "OICP_CLIENT_KEY",
    "OICP_CA_BUNDLE",
    "PORTAL_ENVIRONMENT",
    "PORTAL_TEST_CHILD",
    "DJANGO_SETTINGS_MODULE",
    "AUDIT_CHAIN_KEY",
    "AUDIT_CHAIN_KEY_ID",
    "AUDIT_CHAIN_RETIRED_KEYS",
]
AUDIT_KEY = "k" * 40


def load_settings(**values: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in NAMES}
    env.update({"PORTAL_ENV_FILE": "/nonexistent/.env", "DJANGO_SETTINGS_MODULE": "portal.settings", **values})
    code = (
        "import django; from django.conf import settings; django.setup(); "
        "print(settings.PORTAL_ENVIRONMENT, settings.OICP_TIMEOUT_SECONDS, settings.DEBUG)"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_production_refuses_to_start_and_names_every_missing_setting():
    result = load_settings(DJANGO_DEBUG="false")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    for name in ["DJANGO_SECRET_KEY", "AUDIT_CHAIN_KEY", "OICP_BASE_URL", "OICP_PROVIDER_ID"]:
        assert name in result.stderr


def test_the_audit_chain_key_must_be_long_and_its_ids_short():
    complete = {
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "x" * 50,
        "OICP_BASE_URL": "http://127.0.0.1:8090",
        "OICP_PROVIDER_ID": "DE-ABC",
    }
    result = load_settings(**complete, AUDIT_CHAIN_KEY="short")
    assert result.returncode != 0 and "AUDIT_CHAIN_KEY must be at least 32 characters" in result.stderr
    result = load_settings(
        **complete, AUDIT_CHAIN_KEY=AUDIT_KEY, AUDIT_CHAIN_RETIRED_KEYS="a-very-long-key-id-2024=" + "o" * 40
    )
    assert result.returncode != 0 and "1 to 16 characters" in result.stderr
    assert (
        load_settings(
            **complete,
            AUDIT_CHAIN_KEY=AUDIT_KEY,
            AUDIT_CHAIN_KEY_ID="2027",
            AUDIT_CHAIN_RETIRED_KEYS="2026=" + "o" * 40,
        ).returncode
        == 0
    )


def test_hubject_over_https_needs_the_client_certificate():
    result = load_settings(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="x" * 50,
        AUDIT_CHAIN_KEY=AUDIT_KEY,
        OICP_BASE_URL="https://service-qa.hubject.com",
        OICP_PROVIDER_ID="DE-ABC",
    )
    assert result.returncode != 0
    assert "OICP_CLIENT_CERT" in result.stderr and "OICP_CLIENT_KEY" in result.stderr
    assert "DJANGO_SECRET_KEY" not in result.stderr.split("set ")[-1]


@pytest.mark.parametrize(
    "url, badge",
    [
        ("https://service-qa.hubject.com", "QA"),
        ("https://service.hubject.com", "PRODUCTION"),
        ("http://127.0.0.1:8090", "SANDBOX"),
    ],
)
def test_complete_production_settings_start_with_the_right_badge(url, badge):
    result = load_settings(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="x" * 50,
        AUDIT_CHAIN_KEY=AUDIT_KEY,
        OICP_BASE_URL=url,
        OICP_PROVIDER_ID="DE-ABC",
        OICP_CLIENT_CERT="/etc/portal/cert.pem",
        OICP_CLIENT_KEY="/etc/portal/key.pem",
    )
    assert result.returncode == 0, result.stderr
    environment, timeout, debug = result.stdout.split()
    assert (environment, debug) == (badge, "False")
    assert float(timeout) > 60  # the default waits longer than Hubject's 60 s CPO window


def test_debug_starts_without_secrets():
    result = load_settings(DJANGO_DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "UNCONFIGURED"


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(settings):
    options = settings.DATABASES["default"].get("OPTIONS", {})
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        pytest.skip("SQLite only")
    assert "journal_mode=WAL" in options["init_command"]
    assert options["timeout"] >= 5 and options["transaction_mode"] == "IMMEDIATE"


# --- one list of settings: what the code reads, .env.example and the README's table agree ----------

_READS = re.compile(
    r'\benv(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"|environ(?:\.get)?\(\s*"([A-Z][A-Z0-9_]+)"'
    r'|\benv\.get\(\s*"([A-Z][A-Z0-9_]+)"|environ\[\s*"([A-Z][A-Z0-9_]+)"\]'
)
# Read by the code but set by the machinery, not by an operator.
_INTERNAL = {"DJANGO_SETTINGS_MODULE", "PORTAL_TEST_CHILD", "CI"}


def _names(pattern: re.Pattern, text: str) -> set[str]:
    return {next(group for group in match.groups() if group) for match in pattern.finditer(text)}


def test_every_setting_read_is_in_env_example_and_the_readme_and_nothing_else_is():
    sources = ["portal/settings.py", "portal/gunicorn_conf.py", "scripts/run.py"]
    read = set().union(*(_names(_READS, (ROOT / path).read_text()) for path in sources)) - _INTERNAL
    example = set(re.findall(r"(?m)^#?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text()))
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Settings") : readme.index("## Failure behaviour")]
    documented = set(
        re.findall(
            r"`([A-Z][A-Z0-9_]+)`",
            "\n".join(line.split("|")[1] for line in table.splitlines() if line.startswith("| `")),
        )
    )
    assert sorted(read - example) == [], "read by the code, missing from .env.example"
    assert sorted(example - read) == [], "in .env.example, read by nothing"
    assert sorted(read - documented) == [], "read by the code, missing from the README's settings table"
    assert sorted(documented - read) == [], "in the README's settings table, read by nothing"
