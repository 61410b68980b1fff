"""The audit trail: its records, the chain's head, purge checkpoints, verifications, holds, exports."""

from datetime import UTC

from django.conf import settings
from django.db import models

from .charging import ChargingSession
from .json_field import CanonicalJSONField
from .stops import RemoteStopRequest


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
        EVSE_DATA_PULLED = "EVSE_DATA_PULLED", "EVSE directory pulled from Hubject"
        OPERATOR_CONTACT_CHANGED = "OPERATOR_CONTACT_CHANGED", "CPO contact details changed by support"
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
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    key_id = models.CharField(max_length=16, blank=True)
    signature = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Purge checkpoint #{self.pk}: {self.purged_count} records up to id {self.last_purged_id}"

    def signature_payload(self) -> dict:
        return checkpoint_payload(
            purged_before=self.purged_before,
            purged_count=self.purged_count,
            last_purged_id=self.last_purged_id,
            last_purged_hash=self.last_purged_hash,
        )


def checkpoint_payload(*, purged_before, purged_count: int, last_purged_id: int, last_purged_hash: str) -> dict:
    """What a purge checkpoint's signature covers (the same before the purge and when verified)."""
    return {
        "purged_before": purged_before.astimezone(UTC).isoformat(timespec="microseconds"),
        "purged_count": purged_count,
        "last_purged_id": last_purged_id,
        "last_purged_hash": last_purged_hash,
    }


class AuditVerification(models.Model):
    """One walk over the audit chain, shown to supervisors: the daily one (created DONE), or one a
    supervisor asked for ("verify now": QUEUED, RUNNING in a worker, then DONE or FAILED)."""

    class State(models.TextChoices):
        QUEUED = "QUEUED", "Queued"
        RUNNING = "RUNNING", "Running"
        DONE = "DONE", "Done"
        FAILED = "FAILED", "Did not run"

    state = models.CharField(max_length=8, choices=State.choices, default=State.DONE)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
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
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

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

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+")
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
