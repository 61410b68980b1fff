"""The session page's stop area: what its button, blocker, dialog and status card show to this viewer.

Shared by the session page (charging) and the stop request's answer (stops): one place decides it.
"""

from django.http import HttpRequest

from . import presenters, selectors
from .forms import RemoteStopForm

REQUEST_STOP = "charging_sessions.request_remote_stop"


def can_stop(request: HttpRequest) -> bool:
    return request.user.has_perm(REQUEST_STOP)


def stop_area_context(
    request: HttpRequest,
    charging_session,
    *,
    form: RemoteStopForm | None = None,
    notice: presenters.Notice | None = None,
) -> dict:
    """What the session page's stop area, dialog and status card show."""
    block = selectors.stop_block(charging_session=charging_session)
    latest = selectors.latest_stop_request(charging_session=charging_session)
    allowed = can_stop(request)
    return {
        "charging_session": charging_session,
        "blocker": presenters.blocker_text(block),
        "blocker_tone": presenters.blocker_tone(block),
        "blocker_mark": presenters.TONE_MARKS.get(presenters.blocker_tone(block), ""),
        "can_stop": allowed,
        "form": form or RemoteStopForm(),
        "notice": notice,
        "progress": presenters.stop_progress(stop_request=latest, can_stop=allowed) if latest else None,
    }
