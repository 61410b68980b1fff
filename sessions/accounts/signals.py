"""At each login, note in the session what the login still owes, so pages need not ask the database.

Connected by ChargingSessionsConfig.ready(). The gate (middleware.py) reads the notes; the pages
that change them (setting up or turning off the second factor, changing the password) update them.
"""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from . import selectors

# Session keys.
TWO_FACTOR_ENROLLED = "accounts_two_factor_enrolled"
PASSWORD_CHANGE_REQUIRED = "accounts_password_change_required"


@receiver(user_logged_in, dispatch_uid="accounts.note_what_the_login_owes")
def note_what_the_login_owes(sender, request, user, **kwargs) -> None:
    session = getattr(request, "session", None)
    if session is None:
        return
    session[TWO_FACTOR_ENROLLED] = selectors.has_two_factor(user)
    session[PASSWORD_CHANGE_REQUIRED] = selectors.password_change_required(user)
