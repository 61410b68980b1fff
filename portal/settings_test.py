"""Test settings: a complete, deterministic environment, then the real settings module.

Processes the tests start themselves (a Celery worker) set PORTAL_TEST_CHILD=1 and pass their own
broker, database and Hubject URLs, which then win over the fixed values below.
"""

import os
from pathlib import Path

_fixed = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "test-secret-key-not-for-production",
    "AUDIT_CHAIN_KEY": "test-audit-chain-key-not-for-production-0123456789",
    "AUDIT_CHAIN_KEY_ID": "test",
    "OICP_BASE_URL": "http://127.0.0.1:9",
    "OICP_PROVIDER_ID": "DE-EMP",
    "CACHE_URL": "locmemcache://",
    "DJANGO_SECURE_COOKIES": "false",
    "CELERY_BROKER_URL": "redis://127.0.0.1:9/0",
}
for _name, _value in _fixed.items():
    # A developer's shell or .env must not change what the tests see.
    if os.environ.get("PORTAL_TEST_CHILD") == "1":
        os.environ.setdefault(_name, _value)
    else:
        os.environ[_name] = _value

from .settings import *  # noqa: E402,F403
from .settings import BASE_DIR, DATABASES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
OICP_RETRY_BACKOFF_SECONDS = 0.01

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: the Celery worker the integration tests start must see the same rows.
    _test_db_dir = Path(os.environ.get("PORTAL_TEST_DB_DIR", BASE_DIR / "var"))
    _test_db_dir.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": str(_test_db_dir / "test.sqlite3")}
# The anchors of the test database's chain, shared with the worker the tests start (it inherits
# the variable); tests/conftest.py empties the file before each test, as the database is emptied.
if os.environ.get("PORTAL_TEST_CHILD") != "1":
    os.environ["AUDIT_ANCHOR_DIR"] = str(
        Path(os.environ.get("PORTAL_TEST_DB_DIR", BASE_DIR / "var")) / f"audit-anchors-{os.getpid()}"
    )
AUDIT_ANCHOR_DIR = Path(os.environ["AUDIT_ANCHOR_DIR"])
# Most tests read the effect right after the POST; tests/test_inbound_queue.py covers "worker", and
# the web servers tests/test_scale_out.py starts run in it (PORTAL_TEST_INBOUND_APPLY=worker).
OICP_INBOUND_APPLY = os.environ.get("PORTAL_TEST_INBOUND_APPLY", "request")
