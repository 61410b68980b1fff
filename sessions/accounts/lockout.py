"""Login throttling on top of django-axes' lockout by username and address.

Axes locks a username for one address after AXES_FAILURE_LIMIT failures. A guesser with many
addresses is not stopped by that, so the handler below also counts one username's failures from
every address: after AXES_USERNAME_FAILURE_LIMIT of them within AXES_COOLOFF_TIME, that username is
locked for every address it has not logged in from in the last KNOWN_ADDRESS_DAYS (its owner, at
their usual desk, can still log in). Guessing one password is so held to about
AXES_USERNAME_FAILURE_LIMIT tries per cool-off period, however many addresses the guesser has.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from axes.attempts import get_cool_off_threshold
from axes.conf import settings
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_failure_limit
from axes.models import AccessAttempt, AccessLog
from django.db.models import Count, Sum
from django.utils import timezone

logger = logging.getLogger(__name__)

KNOWN_ADDRESS_DAYS = 30
USERNAME_SCOPE = "username"  # request.portal_lockout_scope when the per-username limit locked it


class PortalAxesHandler(AxesDatabaseHandler):
    """AxesDatabaseHandler plus the per-username limit (settings.AXES_HANDLER)."""

    def get_failures(self, request, credentials: dict | None = None) -> int:
        failures = super().get_failures(request, credentials)
        limit = get_failure_limit(request, credentials)
        if failures < limit and self._username_locked(request, credentials):
            request.portal_lockout_scope = USERNAME_SCOPE
            return limit
        return failures

    @staticmethod
    def _username_locked(request, credentials) -> bool:
        per_username = getattr(settings, "AXES_USERNAME_FAILURE_LIMIT", 0)
        username = get_client_username(request, credentials)
        if not per_username or not username:
            return False
        attempts = AccessAttempt.objects.filter(username=username)
        if settings.AXES_COOLOFF_TIME is not None:
            attempts = attempts.filter(attempt_time__gte=get_cool_off_threshold(request))
        totals = attempts.aggregate(failures=Sum("failures_since_start"), addresses=Count("ip_address", distinct=True))
        if (totals["failures"] or 0) < per_username:
            return False
        address = getattr(request, "axes_ip_address", None)
        known = (
            address is not None
            and AccessLog.objects.filter(
                username=username,
                ip_address=address,
                attempt_time__gte=timezone.now() - timedelta(days=KNOWN_ADDRESS_DAYS),
            ).exists()
        )
        if known:
            return False
        logger.warning(
            "login for %r refused from %s: %s failed logins for this username from %s addresses "
            "(AXES_USERNAME_FAILURE_LIMIT %s)",
            username,
            address,
            totals["failures"],
            totals["addresses"],
            per_username,
        )
        return True
