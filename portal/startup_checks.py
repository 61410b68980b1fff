"""Production refuses to start half-configured: every missing secret named at once.

Called at the end of portal/settings.py with the settings it read (a module of its own so that the
settings module stays a list of settings).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured


def refuse_to_start_half_configured(values: dict[str, Any]) -> None:
    if not values["DEBUG"]:
        missing = [
            name for name in ("SECRET_KEY", "AUDIT_CHAIN_KEY", "OICP_BASE_URL", "OICP_PROVIDER_ID") if not values[name]
        ]
        # Hubject authenticates partners by TLS client certificate; only the loopback simulator
        # may be reached without one.
        if values["OICP_BASE_URL"] and values["PORTAL_ENVIRONMENT"] != "SANDBOX":
            missing += [name for name in ("OICP_CLIENT_CERT", "OICP_CLIENT_KEY") if not values[name]]
        if missing:
            names = ["DJANGO_SECRET_KEY" if name == "SECRET_KEY" else name for name in missing]
            raise ImproperlyConfigured(
                "The portal cannot start with DJANGO_DEBUG off: set " + ", ".join(names) + " (see .env.example)."
            )
        if len(values["AUDIT_CHAIN_KEY"]) < 32:
            raise ImproperlyConfigured(
                "AUDIT_CHAIN_KEY must be at least 32 characters (for example the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)."
            )
    for key_id in [values["AUDIT_CHAIN_KEY_ID"], *values["AUDIT_CHAIN_RETIRED_KEYS"]]:
        if not key_id or len(key_id) > 16:
            raise ImproperlyConfigured(
                f"Audit chain key id {key_id!r}: 1 to 16 characters (AUDIT_CHAIN_KEY_ID, AUDIT_CHAIN_RETIRED_KEYS)"
            )
