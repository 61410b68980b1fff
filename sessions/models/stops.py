"""The remote stop: why an agent asked, and each request with what Hubject answered."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from .charging import ChargingSession


class StopReason(models.TextChoices):
    DRIVER_ASKED = "DRIVER_ASKED", "Driver asked to stop"
    CABLE_LOCKED = "CABLE_LOCKED", "Cable locked / cannot unplug"
    APP_OR_CARD_FAILURE = "APP_OR_CARD_FAILURE", "App or card failure"
    SUSPECTED_MISUSE = "SUSPECTED_MISUSE", "Suspected misuse"
    BILLING_DISPUTE = "BILLING_DISPUTE", "Billing dispute"
    DUPLICATE_SESSION = "DUPLICATE_SESSION", "Duplicate session"
    OTHER = "OTHER", "Other (explain in the note)"


# A stop that may have reached the CPO without the portal knowing the end: accepted and never
# confirmed, or failed with its outcome unknown (the stuck queue's stops). Also the condition of the
# partial index stop_stuck_session_idx; the queue filters with this very Q, so that PostgreSQL sees
# its condition implies the index's.
STUCK_STOP_Q = Q(state="UNCONFIRMED") | Q(state="FAILED", outcome_unknown=True)


class RemoteStopRequest(models.Model):
    """One agent's request to stop one session, and what Hubject answered to each attempt."""

    class State(models.TextChoices):
        PENDING = "PENDING", "Queued"
        SENDING = "SENDING", "Sent to Hubject"
        ACCEPTED = "ACCEPTED", "Accepted"
        REJECTED = "REJECTED", "Rejected"
        FAILED = "FAILED", "Failed"
        # After ACCEPTED: the CPO's End notification or CDR arrived for the session ...
        CONFIRMED = "CONFIRMED", "Confirmed"
        # ... or neither arrived within STOP_CONFIRMATION_MINUTES.
        UNCONFIRMED = "UNCONFIRMED", "Unconfirmed"

    class ConfirmedBy(models.TextChoices):
        END = "END", "ChargingNotification End"
        CDR = "CDR", "Charge detail record"

    OPEN_STATES = (State.PENDING, State.SENDING)
    # Nothing more is sent to Hubject for these.
    FINAL_STATES = (State.ACCEPTED, State.REJECTED, State.FAILED, State.CONFIRMED, State.UNCONFIRMED)
    # Nothing more will happen to these at all (ACCEPTED still waits for its confirmation).
    SETTLED_STATES = (State.REJECTED, State.FAILED, State.CONFIRMED, State.UNCONFIRMED)

    charging_session = models.ForeignKey(ChargingSession, on_delete=models.PROTECT, related_name="stop_requests")
    # The session's OperatorID, copied when the request is created (`request_remote_stop`; migration
    # 0022 filled the older rows). It never goes stale: a session's OperatorID comes from its EvseID,
    # which never changes. Kept here so the CPO pages read a CPO's stops of a period by one index
    # range (stop_operator_at_idx) instead of joining every session of the CPO (bench/RESULTS.md).
    operator_id = models.CharField("OperatorID", max_length=10, default="", editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="stop_requests"
    )
    reason = models.CharField(max_length=32, choices=StopReason.choices)
    note = models.TextField(blank=True, max_length=2000)
    case_reference = models.CharField(max_length=64, blank=True, db_index=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING, db_index=True)
    correlation_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    attempt_count = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # OICP StatusCode.Code is a 3-character string ("000"); never a number, never the HTTP status.
    oicp_code = models.CharField("OICP code", max_length=3, blank=True, db_index=True)
    oicp_description = models.CharField("OICP description", max_length=200, blank=True)
    oicp_additional_info = models.CharField("OICP additional info", max_length=1000, blank=True)
    process_id = models.CharField("Hubject Process-ID", max_length=100, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    requested_at = models.DateTimeField(db_index=True)
    first_sent_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmed_by = models.CharField(max_length=3, choices=ConfirmedBy.choices, blank=True)
    time_to_confirmation = models.DurationField(null=True, blank=True)
    # The worker stopped while a call was in flight: Hubject may or may not have received it.
    outcome_unknown = models.BooleanField(default=False)

    class Meta:
        ordering = ["-requested_at"]
        permissions = [("view_all_remote_stops", "Can see every agent's stop requests")]
        indexes = [
            # The CPO pages: one CPO's stops of a period as one index range, holding every column the
            # pages' aggregates read (id for their COUNTs), so both databases answer from the index
            # alone (the rows of one CPO lie scattered over the whole table). Key columns rather than
            # INCLUDE, which SQLite lacks (and Django warns about there).
            models.Index(
                fields=["operator_id", "requested_at", "state", "oicp_code", "time_to_confirmation", "id"],
                name="stop_operator_at_idx",
            ),
            # The stuck-sessions queue (SQLite) and the history's state + OperatorID filters find the stops
            # of a few sessions in one state (bench/RESULTS.md: without it they walked every stop in that
            # state). With requested_at, so the history's count by state, operator and period reads the
            # index alone (PostgreSQL read every stop in the state from the table).
            models.Index(fields=["state", "charging_session", "requested_at"], name="stop_state_session_at_idx"),
            # The stuck queue's stops on PostgreSQL: an index of the stuck stops alone, by session (the
            # state index had it read every UNCONFIRMED and FAILED stop, most of them of closed sessions).
            # With finished_at, the queue's order, so the page's stops are chosen from the index alone.
            models.Index(
                fields=["charging_session", "finished_at", "id"], condition=STUCK_STOP_Q, name="stop_stuck_session_idx"
            ),
        ]
        constraints = [
            # The one-open-stop guard lives in the database: two agents or a double click
            # cannot both create an open request for the same session.
            models.UniqueConstraint(
                fields=["charging_session"],
                condition=Q(state__in=["PENDING", "SENDING"]),
                name="one_open_stop_per_session",
            ),
            models.CheckConstraint(
                condition=Q(
                    state__in=["PENDING", "SENDING", "ACCEPTED", "REJECTED", "FAILED", "CONFIRMED", "UNCONFIRMED"]
                ),
                name="stop_request_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Stop #{self.pk} of {self.charging_session_id} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES
