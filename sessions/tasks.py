"""Celery tasks: ids in, one service call, the retry policy. Nothing else lives here."""

from celery import shared_task
from django.conf import settings

from . import services

# Above the client's own timeouts, so the client always gives up first and its answer is kept.
# The threads pool (the one the portal runs) does not enforce Celery's time limits at all: what
# bounds each call there is the HTTP client's connect and read timeouts (OICP_CONNECT_TIMEOUT_SECONDS,
# OICP_TIMEOUT_SECONDS). A worker that dies mid-call leaves its row SENDING; the sweeper settles it
# (services.sweep_stop_requests → recover_lost_attempt) once it is older than those timeouts + 60 s.
_SOFT_LIMIT = settings.OICP_CONNECT_TIMEOUT_SECONDS + settings.OICP_TIMEOUT_SECONDS + 15
_HARD_LIMIT = _SOFT_LIMIT + 15


def _on_failure(self, exc, task_id, args, kwargs, einfo):
    # An unexpected error or a time limit: close the request so the agent is not left waiting.
    services.mark_remote_stop_failed(stop_request_id=args[0], error=f"{type(exc).__name__}: {exc}")


@shared_task(
    name="charging_sessions.send_remote_stop",
    bind=True,
    acks_late=True,  # safe: the service is idempotent, so a redelivered message does nothing
    ignore_result=True,
    max_retries=None,  # the attempt count is bounded by OICP_MAX_ATTEMPTS in the database
    soft_time_limit=_SOFT_LIMIT,
    time_limit=_HARD_LIMIT,
    on_failure=_on_failure,
)
def send_remote_stop(self, stop_request_id: int) -> None:
    outcome = services.send_remote_stop(stop_request_id=stop_request_id, deferrals=self.request.retries)
    if outcome.retry_in is not None:
        # Countdown messages wait in a worker's reservation window until due; on their own queue
        # (and worker) they cannot hold up fresh stops for healthy CPOs.
        raise self.retry(countdown=outcome.retry_in, queue=settings.STOP_RETRY_QUEUE)


@shared_task(name="charging_sessions.mark_unconfirmed_stops", ignore_result=True)
def mark_unconfirmed_stops() -> None:
    services.mark_unconfirmed_stops()


@shared_task(name="charging_sessions.sweep_stop_requests", ignore_result=True)
def sweep_stop_requests() -> None:
    services.sweep_stop_requests()


@shared_task(name="charging_sessions.export_audit_log", ignore_result=True, acks_late=True, soft_time_limit=3 * 3600)
def export_audit_log(export_id: int) -> None:
    """Write one large audit-log export to a file; idempotent (a redelivered message does nothing)."""
    services.write_audit_export(export_id=export_id)


@shared_task(
    name="charging_sessions.pull_charge_detail_records", ignore_result=True, soft_time_limit=3600, time_limit=3660
)
def pull_charge_detail_records() -> None:
    """CDR reconciliation (beat: every OICP_CDR_PULL_INTERVAL_MINUTES): from the end of the last complete
    run minus OICP_CDR_PULL_OVERLAP_MINUTES (the first run: OICP_CDR_PULL_WINDOW_HOURS back) up to now."""
    services.pull_recent_charge_detail_records()


@shared_task(name="charging_sessions.verify_audit_chain", ignore_result=True)
def verify_audit_chain() -> None:
    services.verify_audit_chain()


@shared_task(name="charging_sessions.anchor_audit_chain", ignore_result=True)
def anchor_audit_chain() -> None:
    """Every AUDIT_ANCHOR_INTERVAL_MINUTES: check what was appended since the newest anchor and
    anchor the new head outside the database (a full verification when that check fails)."""
    services.anchor_audit_chain_periodically()


@shared_task(
    name="charging_sessions.verify_audit_chain_requested", ignore_result=True, acks_late=True, soft_time_limit=3600
)
def verify_audit_chain_requested(verification_id: int) -> None:
    """A supervisor's "verify now": the same walk and audit record as the daily one; idempotent."""
    services.run_requested_verification(verification_id=verification_id)


@shared_task(name="charging_sessions.apply_inbound_messages", ignore_result=True)
def apply_inbound_messages(follow_up: bool = False) -> None:
    """Apply stored charging notifications and CDRs to their sessions (kicked by each new message,
    swept by beat; `follow_up`: queued by a run that stopped while others held claims, see inbound.queue)."""
    services.apply_inbound_messages(follow_up=follow_up)


@shared_task(name="charging_sessions.report_inbound_refusals", ignore_result=True)
def report_inbound_refusals() -> None:
    services.report_inbound_refusals()


@shared_task(name="charging_sessions.pull_evse_data", ignore_result=True, soft_time_limit=3600, time_limit=3660)
def pull_evse_data() -> None:
    """Hubject's EVSE directory (beat: every EVSE_DATA_PULL_INTERVAL_MINUTES): the changes since the last
    complete pull (LastCall), or everything when none has completed yet."""
    services.pull_evse_data_periodically()
