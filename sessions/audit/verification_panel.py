"""The audit chain's status panel (its last verification, the newest "verify now" request, the button),
as the export page and the stop history show it."""

from django.http import HttpRequest

from . import selectors

VIEW_AUDIT = "charging_sessions.view_auditrecord"
EXPORT = "charging_sessions.export_auditrecord"


def chain_context(request: HttpRequest) -> dict:
    """The audit chain's last verification and the newest "verify now" request, for those who may
    see the audit trail; those who may export may also ask for a verification."""
    if not request.user.has_perm(VIEW_AUDIT):
        return {"verification": None, "running_verification": None, "failed_verification": None, "can_verify": False}
    done = selectors.latest_verification()
    requested = selectors.latest_requested_verification()
    state = requested.state if requested is not None else None
    newer = requested is not None and (done is None or requested.requested_at > done.finished_at)
    return {
        "verification": done,
        "running_verification": requested if state in ("QUEUED", "RUNNING") else None,
        "failed_verification": requested if state == "FAILED" and newer else None,
        "can_verify": request.user.has_perm(EXPORT),
        # Where the form without JavaScript leads back to: the page, not this fragment's address.
        "chain_back": (request.htmx.current_url_abs_path if request.htmx else None) or request.get_full_path(),
    }
