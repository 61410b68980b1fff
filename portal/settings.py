"""Settings of the EMP support portal.

This is the only module that reads the environment. Every value comes through a typed
django-environ read; a `.env` file in the project root is read too, and variables already in
the process environment always win over it. `.env.example` lists every variable. One section per
topic; the checks that refuse a half-configured production start are the last section.
"""

from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from .startup_checks import refuse_to_start_half_configured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# PORTAL_ENV_FILE points elsewhere (tests use it to ignore a developer's .env).
environ.Env.read_env(env.str("PORTAL_ENV_FILE", default=str(BASE_DIR / ".env")), overwrite=False)


def _check_networks(name: str, cidrs: list[str]) -> None:
    for cidr in cidrs:
        try:
            ip_network(cidr, strict=False)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {cidr!r} is not an IP network (CIDR)") from None


# --------------------------------------------------------------------------------------------
# Core Django: apps, middleware, templates, i18n, static files
# (https://docs.djangoproject.com/en/5.2/ref/settings/)
# --------------------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Only a DEBUG instance may fall back to a throwaway key; production must bring its own.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if DEBUG and not SECRET_KEY:
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    # Full dotted path: the app's label is "charging_sessions", not Django's own "sessions".
    "sessions.apps.ChargingSessionsConfig",
    # The second factor (django-otp): authenticator apps (TOTP) and recovery codes.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",  # its system checks (e.g. settings in the pre-4.0 format)
    "axes",
]

MIDDLEWARE = [
    # First: drops X-Forwarded-Proto / X-Forwarded-For from anyone but a trusted proxy (Security below).
    "sessions.proxy.TrustedProxyHeaderMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After AuthenticationMiddleware: request.user.is_verified(), then the gate that keeps a login still
    # owing its second factor (or a new password, after an admin's reset) on the page that settles it,
    # the Django admin included (sessions/accounts/middleware.py).
    "django_otp.middleware.OTPMiddleware",
    "sessions.accounts.middleware.AccountGateMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "sessions.middleware.CorrelationIdMiddleware",
    # Last: turns the axes backend's lockout signal into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "sessions.context_processors.portal",
            ],
        },
    },
]

LANGUAGE_CODE = "en"
TIME_ZONE = env.str("TIME_ZONE", default="Europe/Berlin")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --------------------------------------------------------------------------------------------
# Database (https://django-environ.readthedocs.io/en/latest/types.html#environ-env-db-url)
# --------------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
if _SQLITE:
    # WAL lets the web server read while the worker writes; IMMEDIATE transactions and a busy
    # timeout make writers queue instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# PostgreSQL: the role the portal connects as, when it is not the owner of the tables (it should
# not be: see README "Database roles"). `migrate`, run as the owner, grants it what the portal
# needs, and no UPDATE, DELETE or TRUNCATE on the audit trail.
DATABASE_APP_ROLE = env.str("DATABASE_APP_ROLE", default="")

# --------------------------------------------------------------------------------------------
# Broker and cache: shared by web and worker processes; the cache holds the per-CPO concurrency slots.
# --------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
# The same Redis as the broker by default, so every web and worker process sees the same slots.
CACHES = {"default": env.cache("CACHE_URL", default=CELERY_BROKER_URL.replace("redis://", "rediscache://", 1))}
CACHES["default"]["KEY_PREFIX"] = "portal"

# --------------------------------------------------------------------------------------------
# Security: HTTPS, cookies, trusted proxies, Content-Security-Policy (production values with DEBUG off)
# --------------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The TLS-terminating proxies in front of the portal (CIDRs). Only a request from one of them may
# say it came over HTTPS (the header above; dropped from anyone else by the first middleware) or
# name the client's address in X-Forwarded-For (login throttling). Default: a proxy on this host.
DJANGO_TRUSTED_PROXIES = env.list("DJANGO_TRUSTED_PROXIES", default=["127.0.0.0/8", "::1/128"])
_check_networks("DJANGO_TRUSTED_PROXIES", DJANGO_TRUSTED_PROXIES)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Load balancers poll the health check over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # the pages send the token from the form / hx-headers, never from the cookie
SESSION_COOKIE_AGE = env.int("DJANGO_SESSION_COOKIE_AGE", default=12 * 3600)  # one working day
X_FRAME_OPTIONS = "DENY"
# `manage.py check --deploy` is clean with production settings; what is silenced, and why:
SILENCED_SYSTEM_CHECKS = []
if not SECURE_SSL_REDIRECT:
    # security.W008: TLS is terminated by the reverse proxy in front of the portal, which also
    # redirects HTTP to HTTPS (and sets X-Forwarded-Proto, see SECURE_PROXY_SSL_HEADER). Set
    # DJANGO_SECURE_SSL_REDIRECT=true to have Django redirect as well.
    SILENCED_SYSTEM_CHECKS.append("security.W008")
if not SECURE_HSTS_PRELOAD:
    # security.W021: joining the browsers' HSTS preload list is the domain owner's decision and
    # hard to undo; set DJANGO_SECURE_HSTS_PRELOAD=true once the whole domain is HTTPS-only.
    SILENCED_SYSTEM_CHECKS.append("security.W021")

# Content-Security-Policy (django-csp, right after SecurityMiddleware) on every response, the Django
# admin and error pages included: scripts, styles, images, fonts and fetches only from the portal
# itself; no inline <script>, <style>, style="" or on*= anywhere (static/portal/portal.js and
# portal.css hold them; the 2FA QR code is inline SVG markup, no data: URL); no plugins, no <base>,
# no framing, forms post only to the portal. No 'unsafe-inline', 'unsafe-eval' or nonces:
# tests/test_csp.py checks the pages, and every browser test fails on a CSP violation (tests/conftest.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
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
    },
}

# --------------------------------------------------------------------------------------------
# OICP / Hubject: the remote stop, the CDR pull, the portal's environment
# --------------------------------------------------------------------------------------------
OICP_BASE_URL = env.str("OICP_BASE_URL", default="").rstrip("/")
OICP_PROVIDER_ID = env.str("OICP_PROVIDER_ID", default="")
OICP_CLIENT_CERT = env.str("OICP_CLIENT_CERT", default="")
OICP_CLIENT_KEY = env.str("OICP_CLIENT_KEY", default="")
OICP_CA_BUNDLE = env.str("OICP_CA_BUNDLE", default="")
# Hubject waits up to 60 s for the CPO; give up only after HBS itself would have answered.
OICP_TIMEOUT_SECONDS = env.float("OICP_TIMEOUT_SECONDS", default=75.0)
OICP_CONNECT_TIMEOUT_SECONDS = env.float("OICP_CONNECT_TIMEOUT_SECONDS", default=10.0)
# Attempts per stop request, counting the first one; transient failures only.
OICP_MAX_ATTEMPTS = env.int("OICP_MAX_ATTEMPTS", default=3)
OICP_RETRY_BACKOFF_SECONDS = env.float("OICP_RETRY_BACKOFF_SECONDS", default=4.0)
# At most this many calls wait on one CPO at once, so a slow CPO cannot take every worker slot.
OICP_PER_OPERATOR_CONCURRENCY = env.int("OICP_PER_OPERATOR_CONCURRENCY", default=5)
# After an accepted stop, wait this long for the CPO to end the session before another stop.
STOP_CONFIRMATION_MINUTES = env.int("STOP_CONFIRMATION_MINUTES", default=10)
# The sweeper re-queues PENDING stops older than this (the broker was down when they were made).
STOP_REDISPATCH_AFTER_SECONDS = env.int("STOP_REDISPATCH_AFTER_SECONDS", default=60)
# The stuck-sessions queue lists active sessions with no update for this many hours.
STUCK_SESSION_HOURS = env.int("STUCK_SESSION_HOURS", default=4)
# CDR reconciliation: every OICP_CDR_PULL_INTERVAL_MINUTES (0: never) pull Hubject's CDRs
# (GetChargeDetailRecords) and store the ones never pushed. Each run starts where the last complete
# run ended, minus OICP_CDR_PULL_OVERLAP_MINUTES, up to now, so after downtime the next run pulls the
# whole gap; the very first run (none complete yet) starts OICP_CDR_PULL_WINDOW_HOURS back.
OICP_CDR_PULL_WINDOW_HOURS = env.int("OICP_CDR_PULL_WINDOW_HOURS", default=24)
OICP_CDR_PULL_OVERLAP_MINUTES = env.int("OICP_CDR_PULL_OVERLAP_MINUTES", default=60)
OICP_CDR_PULL_INTERVAL_MINUTES = env.int("OICP_CDR_PULL_INTERVAL_MINUTES", default=15)
# Hubject's EVSE directory (eRoamingPullEvseData): a full pull at first and on demand (pull_evse_data
# --full), then every EVSE_DATA_PULL_INTERVAL_MINUTES (0: never) a delta since the start of the last
# complete run minus EVSE_DATA_PULL_OVERLAP_MINUTES; EVSE_DATA_PULL_PAGE_SIZE records a page (at most 2000).
EVSE_DATA_PULL_INTERVAL_MINUTES = env.int("EVSE_DATA_PULL_INTERVAL_MINUTES", default=60)
EVSE_DATA_PULL_OVERLAP_MINUTES = env.int("EVSE_DATA_PULL_OVERLAP_MINUTES", default=10)
EVSE_DATA_PULL_PAGE_SIZE = env.int("EVSE_DATA_PULL_PAGE_SIZE", default=2000)


def _environment_from_url(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if host in {"127.0.0.1", "localhost", "::1"}:
        return "SANDBOX"
    if host == "service-qa.hubject.com":
        return "QA"
    if host == "service.hubject.com":
        return "PRODUCTION"
    return "CUSTOM" if host else "UNCONFIGURED"


# Shown in the top bar; derived from OICP_BASE_URL unless set.
PORTAL_ENVIRONMENT = env.str("PORTAL_ENVIRONMENT", default="").upper() or _environment_from_url(OICP_BASE_URL)

# --------------------------------------------------------------------------------------------
# Inbound OICP endpoints (Hubject pushes charging notifications and CDRs to /api/oicp/...)
# --------------------------------------------------------------------------------------------
# Who may call them: client addresses in these networks (CIDRs; Hubject's addresses in production).
OICP_INBOUND_ALLOWED_NETWORKS = env.list("OICP_INBOUND_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
# TLS-terminating proxies in front of the portal: from them the client is the rightmost
# X-Forwarded-For address that is not itself such a proxy. Empty: REMOTE_ADDR is the client.
OICP_INBOUND_TRUSTED_PROXIES = env.list("OICP_INBOUND_TRUSTED_PROXIES", default=[])
# Optional: a header the proxy sets after verifying Hubject's client certificate (e.g.
# X-SSL-Client-Verify), honoured only from a trusted proxy, and the value it must have.
OICP_INBOUND_VERIFIED_HEADER = env.str("OICP_INBOUND_VERIFIED_HEADER", default="")
OICP_INBOUND_VERIFIED_VALUE = env.str("OICP_INBOUND_VERIFIED_VALUE", default="SUCCESS")
# "worker": a pushed notification or CDR is acknowledged once stored and applied to its session by
# the worker moments later (sessions/services/inbound_queue.py); "request": applied before the
# acknowledgement (no worker needed for inbound messages, slower under bursts).
OICP_INBOUND_APPLY = env.str("OICP_INBOUND_APPLY", default="worker")
if OICP_INBOUND_APPLY not in ("worker", "request"):
    raise ImproperlyConfigured(f"OICP_INBOUND_APPLY must be 'worker' or 'request', not {OICP_INBOUND_APPLY!r}")
# The beat schedule applies stored messages this often even when no new message kicked the worker.
OICP_INBOUND_SWEEP_SECONDS = env.int("OICP_INBOUND_SWEEP_SECONDS", default=2)
# The queue of the apply tasks, served by its own worker (portal/processes.py).
OICP_INBOUND_QUEUE = env.str("OICP_INBOUND_QUEUE", default="inbound")
# Above this many messages a second, applying waits (at most OICP_INBOUND_MAX_DEFER_SECONDS) for the
# acknowledgements; 0: never. Above steady traffic (at 600 a steady 500/s waited: lag p99 15 s); on
# SQLite, below a burst (its one writer shared with an applier: ~550/s): bench/NOTES.md, issue 16.
OICP_INBOUND_BURST_RATE = env.int("OICP_INBOUND_BURST_RATE", default=300 if _SQLITE else 1000)
OICP_INBOUND_MAX_DEFER_SECONDS = env.int("OICP_INBOUND_MAX_DEFER_SECONDS", default=20)
# Larger bodies are refused with HTTP 413 before they are read.
OICP_INBOUND_MAX_BODY_BYTES = env.int("OICP_INBOUND_MAX_BODY_BYTES", default=256 * 1024)
_check_networks("OICP_INBOUND_ALLOWED_NETWORKS", OICP_INBOUND_ALLOWED_NETWORKS)
_check_networks("OICP_INBOUND_TRUSTED_PROXIES", OICP_INBOUND_TRUSTED_PROXIES)

# --------------------------------------------------------------------------------------------
# Audit trail: the chain's key, exports, retention, anchors
# --------------------------------------------------------------------------------------------
# The audit chain's key (HMAC-SHA-256, sessions/audit_keys.py): kept out of the database, so that
# write access to the database is not enough to rewrite the audit trail unseen. Its id is stored
# on every record; to rotate, give a new key and id, and move the old pair to
# AUDIT_CHAIN_RETIRED_KEYS ("id=key,id=key"), which only verify. Only DEBUG may go without one.
AUDIT_CHAIN_KEY = env.str("AUDIT_CHAIN_KEY", default="")
AUDIT_CHAIN_KEY_ID = env.str("AUDIT_CHAIN_KEY_ID", default="1")
AUDIT_CHAIN_RETIRED_KEYS = env.dict("AUDIT_CHAIN_RETIRED_KEYS", default={})
if DEBUG and not AUDIT_CHAIN_KEY:
    AUDIT_CHAIN_KEY, AUDIT_CHAIN_KEY_ID = "insecure-development-audit-chain-key-do-not-use", "dev"
# Exports up to this many rows stream straight to the browser; larger ones run as a Celery job.
AUDIT_EXPORT_SYNC_MAX_ROWS = env.int("AUDIT_EXPORT_SYNC_MAX_ROWS", default=50_000)
# Where background (and XLSX) exports are written; only the portal's download view serves them.
AUDIT_EXPORT_DIR = Path(env.str("AUDIT_EXPORT_DIR", default=str(BASE_DIR / "var" / "exports")))
# Audit records younger than this may not be purged (manage.py purge_audit). On PostgreSQL
# `migrate` also writes it into the database's purge policy, which the purge function enforces.
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=3650)
# Signed anchors of the chain's head (sessions/audit_anchors.py), one JSON line per anchor in
# <dir>/anchors.jsonl, written by every verification, every export and every
# AUDIT_ANCHOR_INTERVAL_MINUTES. Keep it off the database's host and append-only (a separate
# volume with `chattr +a`, or a shipped log): verification compares the chain with it, so records
# cut off the end, a wiped table or a forged purge checkpoint are reported.
AUDIT_ANCHOR_DIR = Path(env.str("AUDIT_ANCHOR_DIR", default=str(BASE_DIR / "var" / "audit-anchors")))
AUDIT_ANCHOR_INTERVAL_MINUTES = env.int("AUDIT_ANCHOR_INTERVAL_MINUTES", default=15)

# --------------------------------------------------------------------------------------------
# Logins: passwords, throttling (django-axes), two-factor authentication (django-otp; sessions/accounts)
# --------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "charging_sessions:session-list"
LOGOUT_REDIRECT_URL = "login"
# Throttling: after AXES_FAILURE_LIMIT failed logins for one username from one IP address, that pair
# is locked out for AXES_COOLOFF_TIME; after AXES_USERNAME_FAILURE_LIMIT failed logins for one
# username from any addresses within AXES_COOLOFF_TIME, that username is locked for every address it
# has not recently logged in from (sessions/accounts/lockout.py). `manage.py axes_reset` (or
# axes_reset_username NAME) unlocks.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out username + IP at once
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_FAILURE_LIMIT = env.int("AXES_USERNAME_FAILURE_LIMIT", default=20)  # 0: no per-username limit
AXES_HANDLER = "sessions.accounts.lockout.PortalAxesHandler"
# REMOTE_ADDR, or from a trusted proxy (DJANGO_TRUSTED_PROXIES) the client it names.
AXES_CLIENT_IP_CALLABLE = "sessions.proxy.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "sessions.accounts.locked_out.locked_out"  # renders registration/locked_out.html, HTTP 429
# Two-factor: roles (sessions/roles.py group names, or "Superuser") that must log in with a second
# factor: set it up at the first login, then a code at every login. Everyone else may turn it on.
# Default: the roles that can stop sessions in bulk (in the Django admin), and superusers, whenever
# the portal talks to a real Hubject system; nobody in the sandbox (the demo's loopback simulator),
# so the demo stays two commands away from a stop. Empty the variable to require it of nobody.
_SANDBOX = _environment_from_url(OICP_BASE_URL) in ("SANDBOX", "UNCONFIGURED")
TWO_FACTOR_REQUIRED_ROLES = [
    role.strip()
    for role in env.list(
        "TWO_FACTOR_REQUIRED_ROLES", default=[] if _SANDBOX else ["Support admin", "Supervisor", "Superuser"]
    )
    if role.strip()
]
_ROLES = {"Support agent", "Support admin", "Supervisor", "Auditor", "Superuser"}  # sessions/roles.py
if set(TWO_FACTOR_REQUIRED_ROLES) - _ROLES:
    raise ImproperlyConfigured(
        f"TWO_FACTOR_REQUIRED_ROLES: {sorted(set(TWO_FACTOR_REQUIRED_ROLES) - _ROLES)} "
        f"is not a role; use {sorted(_ROLES)}"
    )
# The account's name in the authenticator app, with the environment outside production.
OTP_TOTP_ISSUER = "EMP support portal" + ("" if PORTAL_ENVIRONMENT == "PRODUCTION" else f" ({PORTAL_ENVIRONMENT})")

# --------------------------------------------------------------------------------------------
# Celery and the beat schedule (https://docs.celeryq.dev/en/stable/userguide/configuration.html)
# --------------------------------------------------------------------------------------------
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers and beat ride out a broker outage of any length: they reconnect every 2, 4, 6 … 30 s for as
# long as Redis is away (Celery's default gives up after 100 attempts, ~47 minutes, and exits).
# portal/celery.py keeps a worker with work in flight from crashing on the lost connection.
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A call in flight when Redis goes away finishes and records Hubject's answer (it needs only the
# database); cancelling it would leave its outcome unknown. Explicit, as Celery 6 flips the default.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# A redelivered message must not arrive while a retry countdown is still legitimately waiting.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    # With Redis down, publishing a stop must fail within seconds (the request stays PENDING and the
    # sweeper sends it later), not retry for minutes while the agent's page hangs. Measured: a
    # refused connection fails in ~0.05 s (instead of ~6 s of kombu retries); a Redis that accepts
    # but never answers fails after socket_timeout (it would otherwise hang forever).
    "max_retries": 1,
    "interval_start": 0,
    "socket_connect_timeout": 3,
    "socket_timeout": 10,  # above the worker's 1 s BRPOP poll
}
CELERY_BROKER_CONNECTION_TIMEOUT = 3
# The options above are the worker's (its BRPOP poll needs socket_timeout above 1 s, and a worker
# should ride out a slow broker, not give up). Publishing a stop is different: the agent's click
# waits for it. services.dispatch_remote_stop therefore publishes on a connection of its own, with
# this bound on the TCP connect and on each broker reply and no retries (kombu's max_retries=0,
# redis-py retries nothing), and the stop is saved before it is published. Measured with a broker
# that accepts and never answers, and with a Redis in CLIENT PAUSE: the click answers in ~1.1 s
# (it took 10.6 s with the options above, and froze for 30 s in the field). A stop the broker did
# not take stays PENDING and the sweeper sends it.
STOP_PUBLISH_TIMEOUT_SECONDS = env.float("STOP_PUBLISH_TIMEOUT_SECONDS", default=1.0)
# Celery's Django fixup closes every database connection before and after each task unless this is
# set; on PostgreSQL that is a new connection (a server process) per task: measured ~20 ms of each
# stop's latency. Connections are then kept as DATABASE_CONN_MAX_AGE says (and health-checked).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_TIMEZONE = TIME_ZONE
# Retries and stops deferred by the per-CPO limit go to this queue, served by its own worker
# (`celery -A portal worker -Q stop-retries`), so their countdown messages never sit in front of
# fresh stops. A single worker can serve both: `-Q celery,stop-retries`.
STOP_RETRY_QUEUE = env.str("STOP_RETRY_QUEUE", default="stop-retries")
CELERY_TASK_ROUTES = {"charging_sessions.apply_inbound_messages": {"queue": OICP_INBOUND_QUEUE}}
# Periodic jobs (run `celery -A portal beat`): every entry is here, built from the values above.


def _expiring_job(task: str, seconds: float) -> dict:
    """A job whose late run is dropped: the next one covers what it would have done (a pull starts
    where the last complete run ended, a sweep finds every pending message), so runs never pile up."""
    return {"task": task, "schedule": float(seconds), "options": {"expires": float(seconds)}}


CELERY_BEAT_SCHEDULE = {
    "mark-unconfirmed-stops": {"task": "charging_sessions.mark_unconfirmed_stops", "schedule": 60.0},
    "sweep-stop-requests": {"task": "charging_sessions.sweep_stop_requests", "schedule": 30.0},
    # Supervisors see when the audit chain was last verified; walk it once a day.
    "verify-audit-chain": {"task": "charging_sessions.verify_audit_chain", "schedule": 24 * 3600.0},
    # Refused inbound callers: one audit record per caller and minute, with the count.
    "report-inbound-refusals": {"task": "charging_sessions.report_inbound_refusals", "schedule": 60.0},
    # CDR reconciliation and the EVSE directory's delta pull, each unless its interval is 0.
    **(
        {
            "pull-charge-detail-records": _expiring_job(
                "charging_sessions.pull_charge_detail_records", OICP_CDR_PULL_INTERVAL_MINUTES * 60
            )
        }
        if OICP_CDR_PULL_INTERVAL_MINUTES > 0
        else {}
    ),
    **(
        {"pull-evse-data": _expiring_job("charging_sessions.pull_evse_data", EVSE_DATA_PULL_INTERVAL_MINUTES * 60)}
        if EVSE_DATA_PULL_INTERVAL_MINUTES > 0
        else {}
    ),
    # Stored inbound messages no kick picked up (OICP_INBOUND_SWEEP_SECONDS).
    "apply-inbound-messages": _expiring_job("charging_sessions.apply_inbound_messages", OICP_INBOUND_SWEEP_SECONDS),
    # Signed anchors of the audit chain's head (AUDIT_ANCHOR_INTERVAL_MINUTES).
    "anchor-audit-chain": {
        "task": "charging_sessions.anchor_audit_chain",
        "schedule": AUDIT_ANCHOR_INTERVAL_MINUTES * 60.0,
    },
}

# --------------------------------------------------------------------------------------------
# Web server (gunicorn reads these through portal/gunicorn_conf.py: `gunicorn portal.wsgi -c
# python:portal.gunicorn_conf`)
# --------------------------------------------------------------------------------------------
# Processes, and threads in each (gthread). A connection that is idle or sends half a request holds
# a thread for at most a few seconds (gunicorn_conf.py), so 64 threads per process keep /healthz
# answering with 50 such connections open. Each thread serving a request at the same moment may
# hold a database connection: keep WEB_CONCURRENCY × WEB_THREADS per web machine within
# PostgreSQL's max_connections.
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", default=2)
WEB_THREADS = env.int("WEB_THREADS", default=64)

# --------------------------------------------------------------------------------------------
# Logging: one line per event, with the correlation id of the stop request when there is one.
# --------------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "correlation": {"()": "sessions.log_context.CorrelationIdFilter"},
        # A refused request (403): one line with the user, path and missing permission, no traceback.
        "forbidden_one_line": {"()": "sessions.accounts.denials.OneLineForbiddenFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [cid=%(correlation_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["correlation"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # axes announces itself at INFO in every process; keep its warnings (lockouts) only.
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        "django.request": {"filters": ["forbidden_one_line"]},
    },
}

# --------------------------------------------------------------------------------------------
# Startup checks: production refuses to start half-configured (portal/startup_checks.py)
# --------------------------------------------------------------------------------------------
refuse_to_start_half_configured(globals())
