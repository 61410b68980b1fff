"""Test settings: a complete, deterministic environment, then the real settings module."""
import os

# Fixed values first: settings.py reads them, and a developer's .env cannot change the tests.
for _name, _value in {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "test-secret-key-not-for-production",
    "OICP_BASE_URL": "http://127.0.0.1:9",
    "OICP_PROVIDER_ID": "DE-EMP",
    "CACHE_URL": "locmemcache://",
    "DJANGO_SECURE_COOKIES": "false",
}.items():
    os.environ[_name] = _value
os.environ.setdefault("DATABASE_URL", "sqlite:///:memory:")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
OICP_RETRY_BACKOFF_SECONDS = 0.01
