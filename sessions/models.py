"""The domain: charging sessions, the remote-stop requests agents make, and the audit trail.

Models hold data, constraints and values derived from their own fields only; every write goes
through `sessions.services`, every read used by a screen through `sessions.selectors`.
"""

import uuid
from datetime import UTC

from django.conf import settings
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Lower, Replace, Upper

from .fields import CanonicalJSONField
from .oicp import ids


def _id_search_key(field_name: str):
    """The database's `ids.id_search_key`: upper case, without ids.ID_SEPARATORS."""
    expression = F(field_name)
    for separator in ids.ID_SEPARATORS:
        expression = Replace(expression, Value(separator), Value(""))
    return Upper(expression)


def _search_key_field(field_name: str, max_length: int) -> models.GeneratedField:
    return models.GeneratedField(expression=_id_search_key(field_name),
                                 output_field=models.CharField(max_length=max_length), db_persist=True)


def _partner_key_field(field_name: str) -> models.GeneratedField:
    return models.GeneratedField(expression=Lower(field_name), output_field=models.CharField(max_length=250),
                                 db_persist=True)


class ChargingSession(models.Model):
    """A driver's charging session as Hubject knows it (one Hubject SessionID)."""

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE", "Active"
        # The energy flow stopped (ChargingNotification End); the car may still be plugged in.
        CHARGING_ENDED = "CHARGING_ENDED", "Charging ended"
        # The CPO's charge detail record arrived: the session is over at Hubject.
        CLOSED = "CLOSED", "Closed"

    # Kept exactly as Hubject sent it (HBS compares IDs as given) and sent back that way in a stop.
    session_id = models.CharField("Hubject SessionID", max_length=36)
    # The SessionID folded to lower case: the one key every lookup uses, so a SessionID is found
    # however a CPO, Hubject or an agent spells its case, and never stored twice.
    # Computed by the database, so no path that writes a session (bulk ones included) can forget it.
    session_key = models.GeneratedField(
        expression=Lower("session_id"), output_field=models.CharField(max_length=36), db_persist=True, unique=True
    )
    evse_id = models.CharField("EvseID", max_length=41)
    operator_id = models.CharField("OperatorID", max_length=10, db_index=True)
    provider_id = models.CharField("ProviderID", max_length=7)
    emp_partner_session_id = models.CharField("EMP partner session ID", max_length=250, blank=True)
    cpo_partner_session_id = models.CharField("CPO partner session ID", max_length=250, blank=True)
    # What identified the driver (OICP Identification), as first received from a notification, the
    # CDR or the session feed; a later, different value is recorded in that message's audit record.
    contract_id = models.CharField("contract ID (EvcoID)", max_length=ids.CONTRACT_ID_MAX, blank=True)
    card_uid = models.CharField("card UID", max_length=ids.CARD_UID_MAX, blank=True)
    printed_number = models.CharField("printed card number", max_length=ids.PRINTED_NUMBER_MAX, blank=True)
    # Search keys, one per way a driver names the session (selectors.session_lookups), computed by the
    # database like session_key: EvseID, EvcoID, UID and printed number upper case without separators
    # (ids.id_search_key: "DE ACC E7260 4" → DEACCE72604), partner session IDs in lower case. Each
    # has an index (Meta.indexes); the partner keys replace the partner IDs' own indexes, the EVSE key
    # the EvseID's.
    evse_key = _search_key_field("evse_id", 41)
    emp_partner_key = _partner_key_field("emp_partner_session_id")
    cpo_partner_key = _partner_key_field("cpo_partner_session_id")
    contract_key = _search_key_field("contract_id", ids.CONTRACT_ID_MAX)
    card_uid_key = _search_key_field("card_uid", ids.CARD_UID_MAX)
    printed_number_key = _search_key_field("printed_number", ids.PRINTED_NUMBER_MAX)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    energy_kwh = models.DecimalField("energy (kWh)", max_digits=12, decimal_places=3, null=True, blank=True)
    last_update_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The portal first heard of this session from something other than a Start notification.
    learned_late = models.BooleanField(default=False)
    charging_ended_at = models.DateTimeField("energy flow stopped at", null=True, blank=True)
    cdr_received_at = models.DateTimeField("CDR received at", null=True, blank=True)
    # Closed by a supervisor in the portal, not by a CDR: never a remote stop.
    closed_manually = models.BooleanField(default=False)
    last_error_type = models.CharField(max_length=30, blank=True)
    last_error_info = models.CharField(max_length=250, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        permissions = [
            ("request_remote_stop", "Can ask Hubject to stop a charging session"),
            ("view_stuck_sessions", "Can see the stuck-sessions queue"),
            ("close_session_manually", "Can close a session record by hand"),
        ]
        indexes = [
            models.Index(fields=["status", "-last_update_at"], name="session_status_update_idx"),
            # The stuck-sessions queue: active sessions by last update, oldest first, pk as tiebreaker
            # (bench/RESULTS.md: PostgreSQL otherwise walked every closed session's last_update_at).
            models.Index(fields=["status", "last_update_at", "id"], name="session_status_stale_idx"),
            # Search as drivers speak. The EVSE and contract keys are searched by prefix too: on
            # PostgreSQL their pattern_ops index serves LIKE 'KEY%' (and =) in any collation; SQLite
            # ignores the opclass and searches the index by range (selectors.prefix_q). The SessionID
            # prefix uses session_key's own indexes (unique, and Django's `_like` on PostgreSQL).
            models.Index(fields=["evse_key"], name="session_evse_key_idx", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["contract_key"], name="session_contract_key_idx", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["emp_partner_key"], name="session_emp_partner_key_idx"),
            models.Index(fields=["cpo_partner_key"], name="session_cpo_partner_key_idx"),
            models.Index(fields=["card_uid_key"], name="session_card_uid_key_idx"),
            models.Index(fields=["printed_number_key"], name="session_printed_number_key_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id} at {self.evse_id}"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class StopReason(models.TextChoices):
    DRIVER_ASKED = "DRIVER_ASKED", "Driver asked to stop"
    CABLE_LOCKED = "CABLE_LOCKED", "Cable locked / cannot unplug"
    APP_OR_CARD_FAILURE = "APP_OR_CARD_FAILURE", "App or card failure"
    SUSPECTED_MISUSE = "SUSPECTED_MISUSE", "Suspected misuse"
    BILLING_DISPUTE = "BILLING_DISPUTE", "Billing dispute"
    DUPLICATE_SESSION = "DUPLICATE_SESSION", "Duplicate session"
    OTHER = "OTHER", "Other (explain in the note)"


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
        # The stuck-sessions queue and the history's state + OperatorID filters find the stops of a
        # few sessions in one state (bench/RESULTS.md: without it they walked every stop in that state).
        indexes = [models.Index(fields=["state", "charging_session"], name="stop_state_session_idx")]
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


class AuditRecord(models.Model):
    """Append-only record of every state change and every exchange with Hubject.

    Nothing in the code updates or deletes these rows, and the admin is read-only.
    """

    class EventType(models.TextChoices):
        STOP_REQUESTED = "STOP_REQUESTED", "Stop requested"
        STOP_REFUSED = "STOP_REFUSED", "Stop refused by the portal"
        STOP_SENDING = "STOP_SENDING", "Stop sent to Hubject"
        STOP_ACCEPTED = "STOP_ACCEPTED", "Stop accepted"
        STOP_REJECTED = "STOP_REJECTED", "Stop rejected"
        STOP_ATTEMPT_FAILED = "STOP_ATTEMPT_FAILED", "Attempt failed, retry scheduled"
        STOP_FAILED = "STOP_FAILED", "Stop failed"
        STOP_CONFIRMED = "STOP_CONFIRMED", "Stop confirmed"
        STOP_UNCONFIRMED = "STOP_UNCONFIRMED", "Stop not confirmed in time"
        SESSION_CREATED = "SESSION_CREATED", "Session created"
        SESSION_UPDATED = "SESSION_UPDATED", "Session updated"
        SESSION_CLOSED_MANUALLY = "SESSION_CLOSED_MANUALLY", "Session closed by hand (not a remote stop)"
        NOTIFICATION_RECEIVED = "NOTIFICATION_RECEIVED", "Charging notification received"
        CDR_RECEIVED = "CDR_RECEIVED", "Charge detail record received"
        INBOUND_REFUSED = "INBOUND_REFUSED", "Inbound OICP call refused"
        RECONCILIATION_RUN = "RECONCILIATION_RUN", "CDR reconciliation run"
        SESSIONS_IMPORTED = "SESSIONS_IMPORTED", "Sessions imported"
        AUDIT_EXPORTED = "AUDIT_EXPORTED", "Audit log exported"
        AUDIT_VERIFIED = "AUDIT_VERIFIED", "Audit chain verified"
        AUDIT_PURGED = "AUDIT_PURGED", "Audit records purged"
        LEGAL_HOLD_CHANGED = "LEGAL_HOLD_CHANGED", "Legal hold changed"
        # The portal's own accounts (sessions/accounts): who manages whom, passwords, second factor.
        USER_CREATED = "USER_CREATED", "Team member created"
        USER_ROLE_CHANGED = "USER_ROLE_CHANGED", "Team member's role changed"
        USER_DEACTIVATED = "USER_DEACTIVATED", "Team member deactivated"
        USER_REACTIVATED = "USER_REACTIVATED", "Team member reactivated"
        USER_PASSWORD_RESET = "USER_PASSWORD_RESET", "Password reset by an admin"
        PASSWORD_CHANGED = "PASSWORD_CHANGED", "Password changed"
        TWO_FACTOR_ENROLLED = "TWO_FACTOR_ENROLLED", "Two-factor authentication set up"
        TWO_FACTOR_CODES_RENEWED = "TWO_FACTOR_CODES_RENEWED", "New two-factor recovery codes"
        TWO_FACTOR_RECOVERY_USED = "TWO_FACTOR_RECOVERY_USED", "Recovery code used to log in"
        TWO_FACTOR_DISABLED = "TWO_FACTOR_DISABLED", "Two-factor authentication turned off"
        TWO_FACTOR_RESET = "TWO_FACTOR_RESET", "Two-factor authentication reset by an admin"

    event_type = models.CharField(max_length=32, choices=EventType.choices, db_index=True)
    occurred_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    charging_session = models.ForeignKey(
        ChargingSession, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_records"
    )
    stop_request = models.ForeignKey(
        RemoteStopRequest, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_records"
    )
    correlation_id = models.UUIDField(null=True, blank=True, db_index=True)
    # The exact request sent and response received, and any state change, as JSON; stored as the
    # canonical text the hash chain covers, so verification hashes it without re-serialising.
    data = CanonicalJSONField(default=dict, blank=True)
    # Tamper evidence: HMAC-SHA-256 of this record's canonical content chained to the previous
    # hash (sessions/audit_chain.py), with the key named by key_id (sessions/audit_keys.py).
    prev_hash = models.CharField(max_length=64, blank=True)
    record_hash = models.CharField(max_length=64, blank=True)
    key_id = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        permissions = [("export_auditrecord", "Can export the audit log")]

    def __str__(self) -> str:
        return f"{self.get_event_type_display()} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"

    @property
    def actor_label(self) -> str:
        return self.actor.get_username() if self.actor_id else "system"


class InboundMessage(models.Model):
    """A ChargingNotification or CDR as Hubject pushed (or we pulled) it: raw and parsed."""

    class Kind(models.TextChoices):
        START = "START", "Start notification"
        PROGRESS = "PROGRESS", "Progress notification"
        END = "END", "End notification"
        ERROR = "ERROR", "Error notification"
        CDR = "CDR", "Charge detail record"

    kind = models.CharField(max_length=10, choices=Kind.choices, db_index=True)
    charging_session = models.ForeignKey(
        ChargingSession, on_delete=models.PROTECT, null=True, blank=True, related_name="inbound_messages"
    )
    # The SessionID's lookup key (lower case, as ChargingSession.session_key); `raw` keeps it as sent.
    session_id = models.CharField(max_length=36, db_index=True)
    operator_id = models.CharField(max_length=10, blank=True)
    # A pushed CDR: the {operatorID} of the URL it was posted to (the EvseID's operator or a hub operator).
    path_operator_id = models.CharField(max_length=10, blank=True)
    received_at = models.DateTimeField(db_index=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    raw = models.TextField()
    parsed = models.JSONField(default=dict)
    # Pushed messages are acknowledged once stored, then applied to their session by the worker
    # (sessions.services.inbound_queue): applied_at is empty until then. apply_error says why a
    # message could not be applied; such a message is not retried by itself.
    applied_at = models.DateTimeField(null=True, blank=True)
    apply_error = models.TextField(blank=True)
    # What was odd about the message, each {"code", "field", "text"} (sessions.oicp.anomalies): it
    # was accepted and kept as sent, and people see why it looks different from the spec.
    anomalies = models.JSONField(default=list, blank=True)
    flagged = models.BooleanField(default=False)  # has anomalies; indexed for the supervisors' list
    # Kept, but deliberately not applied to its session (it does not match it, or a second CDR
    # disagrees with the first): the session and its stops were left as they were.
    held_back = models.BooleanField(default=False)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # The supervisors' list of odd messages, newest first: only flagged rows are in it.
            models.Index(fields=["-received_at", "-id"], name="inbound_flagged_idx",
                         condition=models.Q(flagged=True)),
            # The worker's queue: only the few messages still to apply are in this index.
            models.Index(fields=["id"], name="inbound_pending_idx",
                         condition=models.Q(applied_at__isnull=True, apply_error="")),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.session_id}"


class ChargeDetailRecord(models.Model):
    """The CPO's final record of a session; Hubject keeps one per SessionID, and so do we."""

    class Source(models.TextChoices):
        PUSH = "PUSH", "Pushed by Hubject"
        PULL = "PULL", "Pulled (GetChargeDetailRecords)"

    charging_session = models.OneToOneField(ChargingSession, on_delete=models.PROTECT, related_name="cdr")
    session_id = models.CharField(max_length=36, unique=True)
    evse_id = models.CharField(max_length=41)
    operator_id = models.CharField(max_length=10, blank=True)
    charging_start = models.DateTimeField()
    charging_end = models.DateTimeField()
    session_start = models.DateTimeField()
    session_end = models.DateTimeField()
    consumed_energy_kwh = models.DecimalField(max_digits=12, decimal_places=3)
    source = models.CharField(max_length=4, choices=Source.choices)
    received_at = models.DateTimeField()
    data = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"CDR {self.session_id}"


class AuditChainHead(models.Model):
    """One row: the hash of the newest audit record. Locking it serialises the chain's appends."""

    last_hash = models.CharField(max_length=64, blank=True)
    last_record_id = models.BigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Audit chain head: record {self.last_record_id}"


class AuditCheckpoint(models.Model):
    """Left by a purge, so verification still starts from a known hash on what remains.

    Signed with the chain key (`signature_payload`), so that a checkpoint written behind the
    portal's back (to make deleted recent records look purged) is reported. On PostgreSQL only the
    purge function writes these rows; the portal's database role may read them.
    """

    created_at = models.DateTimeField()
    purged_before = models.DateTimeField()
    purged_count = models.PositiveIntegerField()
    last_purged_id = models.BigIntegerField()
    last_purged_hash = models.CharField(max_length=64)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                              related_name="+")
    key_id = models.CharField(max_length=16, blank=True)
    signature = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Purge checkpoint #{self.pk}: {self.purged_count} records up to id {self.last_purged_id}"

    def signature_payload(self) -> dict:
        return checkpoint_payload(purged_before=self.purged_before, purged_count=self.purged_count,
                                  last_purged_id=self.last_purged_id, last_purged_hash=self.last_purged_hash)


def checkpoint_payload(*, purged_before, purged_count: int, last_purged_id: int, last_purged_hash: str) -> dict:
    """What a purge checkpoint's signature covers (the same before the purge and when verified)."""
    return {"purged_before": purged_before.astimezone(UTC).isoformat(timespec="microseconds"),
            "purged_count": purged_count, "last_purged_id": last_purged_id, "last_purged_hash": last_purged_hash}


class AuditVerification(models.Model):
    """One walk over the audit chain, shown to supervisors: the daily one (created DONE), or one a
    supervisor asked for ("verify now": QUEUED, RUNNING in a worker, then DONE or FAILED)."""

    class State(models.TextChoices):
        QUEUED = "QUEUED", "Queued"
        RUNNING = "RUNNING", "Running"
        DONE = "DONE", "Done"
        FAILED = "FAILED", "Did not run"

    state = models.CharField(max_length=8, choices=State.choices, default=State.DONE)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="+")
    requested_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True)  # None until the walk is done
    records_checked = models.PositiveIntegerField(default=0)
    first_broken_id = models.BigIntegerField(null=True, blank=True)
    detail = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)  # why a requested walk did not run

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Audit verification #{self.pk} ({self.get_state_display()})"


class LegalHold(models.Model):
    """While one is active, nothing may be purged from the audit trail."""

    reason = models.CharField(max_length=500)
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+")
    set_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+")

    class Meta:
        ordering = ["-set_at"]

    def __str__(self) -> str:
        return f"Legal hold #{self.pk} ({'released' if self.released_at else 'active'}): {self.reason[:60]}"


class AuditExport(models.Model):
    """One export of the audit log: what was asked for, by whom, and the file's checksum."""

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        JSONL = "jsonl", "JSON Lines"
        XLSX = "xlsx", "Excel (XLSX)"

    class State(models.TextChoices):
        QUEUED = "QUEUED", "Queued"
        RUNNING = "RUNNING", "Running"
        DONE = "DONE", "Ready"
        FAILED = "FAILED", "Failed"

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True,
                                     related_name="+")
    requested_at = models.DateTimeField()
    format = models.CharField(max_length=5, choices=Format.choices)
    filters = models.JSONField(default=dict)
    filter_summary = models.CharField(max_length=1000, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    row_count = models.PositiveIntegerField(null=True, blank=True)
    rows_done = models.PositiveIntegerField(default=0)
    file_name = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"Audit export #{self.pk} ({self.format}, {self.get_state_display()})"


class CdrPullRun(models.Model):
    """One CDR pull (eRoamingGetChargeDetailRecords): its window, how it ended, what it counted.

    Written when the run starts (a run that never finishes stays visible, unfinished) and again
    when it ends, with its RECONCILIATION_RUN audit record. `covered_to` is set only on a run that
    counts for the next run's start (sessions.inbound.reconciliation.next_pull_start): complete,
    no CDR that could not be stored, and a window containing the start a periodic run would have
    used, so the pulled span goes on without a gap.
    """

    class Trigger(models.TextChoices):
        PERIODIC = "PERIODIC", "Periodic (beat)"
        MANUAL = "MANUAL", "By hand (pull_cdrs)"

    trigger = models.CharField(max_length=8, choices=Trigger.choices)
    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    date_from = models.DateTimeField()
    date_to = models.DateTimeField()
    # Where the next periodic run would have started when this one began lay inside its window.
    extends_coverage = models.BooleanField(default=False)
    complete = models.BooleanField(default=False)  # every page read, up to the last one
    ok = models.BooleanField(default=False)  # complete, nothing refused, nothing that could not be stored
    # Everything up to here has been pulled (the window's end, or the run's start if the end lay ahead).
    covered_to = models.DateTimeField(null=True, blank=True, db_index=True)
    pages = models.PositiveIntegerField(default=0)
    seen = models.PositiveIntegerField(default=0)
    new = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    already_seen = models.PositiveIntegerField(default=0)
    held_back = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    failure = models.TextField(blank=True)
    # Not a foreign key: a purge of old audit records must not be blocked by (or delete) a run.
    audit_record_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"CDR pull #{self.pk} {self.date_from:%Y-%m-%d %H:%M} to {self.date_to:%Y-%m-%d %H:%M}"


class InboundRefusalCount(models.Model):
    """Refused calls to the inbound OICP endpoints, counted per caller, minute and reason.

    Anyone can call those endpoints. Counting here (one UPDATE per refused call, no audit chain
    lock) and auditing once per caller and minute, with the counts, keeps the audit trail for what
    matters: 10,000 refused calls from one address leave a handful of records, not 10,000.
    """

    client_address = models.CharField(max_length=64)
    minute = models.DateTimeField()  # the minute (UTC) the calls were refused in
    reason = models.CharField(max_length=200)
    count = models.PositiveIntegerField(default=0)
    first_path = models.CharField(max_length=200)
    # The audit record that reported this caller's minute, once the minute is over.
    audit_record_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client_address", "minute", "reason"],
                                               name="one_refusal_count_per_minute")]
        indexes = [models.Index(fields=["minute"], name="refusal_unreported_idx",
                                condition=Q(audit_record_id__isnull=True))]

    def __str__(self) -> str:
        return f"{self.count} refused call(s) from {self.client_address} at {self.minute:%Y-%m-%d %H:%M}"
