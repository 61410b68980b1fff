"""What Hubject pushes or the portal pulls: notifications, CDRs, pull runs, refused callers."""

from django.db import models
from django.db.models import Q

from .charging import ChargingSession

# A stored message the worker has still to apply: neither applied nor failed. The one definition,
# used by the queue, the admin's filter and the partial index that finds them.
PENDING = Q(applied_at__isnull=True, apply_error="")


class InboundMessageQuerySet(models.QuerySet):
    def pending(self) -> "InboundMessageQuerySet":
        return self.filter(PENDING)


class InboundMessage(models.Model):
    """A ChargingNotification or CDR as Hubject pushed (or we pulled) it: raw and parsed."""

    class Kind(models.TextChoices):
        START = "START", "Start notification"
        PROGRESS = "PROGRESS", "Progress notification"
        END = "END", "End notification"
        ERROR = "ERROR", "Error notification"
        CDR = "CDR", "Charge detail record"

    # Not indexed: five kinds, a fifth of the table each (see migration 0023).
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # Empty until applied: indexed only where set (inbound_charging_session_idx), so the INSERT
    # that acknowledges a message writes no entry for it.
    charging_session = models.ForeignKey(
        ChargingSession,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="inbound_messages",
        db_index=False,
    )
    # The SessionID's lookup key (lower case, as ChargingSession.session_key); `raw` keeps it as sent.
    # Indexed with the id (inbound_session_idx), looked up by equality only.
    session_id = models.CharField(max_length=36)
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
    # The applier that claimed the message (sessions/inbound/claims.py), and until when the claim
    # holds unless renewed: a crashed applier's claim lapses by itself. Once the message is applied,
    # `applier` says who applied it ("host:pid:run", at most 40 characters).
    applier = models.CharField(max_length=40, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    # What was odd about the message, each {"code", "field", "text"} (sessions.oicp.anomalies): it
    # was accepted and kept as sent, and people see why it looks different from the spec.
    anomalies = models.JSONField(default=list, blank=True)
    flagged = models.BooleanField(default=False)  # has anomalies; indexed for the supervisors' list
    # Kept, but deliberately not applied to its session (it does not match it, or a second CDR
    # disagrees with the first): the session and its stops were left as they were.
    held_back = models.BooleanField(default=False)

    objects = InboundMessageQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # A session's messages in arrival order: the CDR endpoint's "received before?" and the
            # appliers' claim. A plain index (db_index on a CharField adds a second one for LIKE on
            # PostgreSQL, which nothing here asks).
            models.Index(fields=["session_id", "id"], name="inbound_session_idx"),
            models.Index(
                fields=["charging_session"],
                name="inbound_charging_session_idx",
                condition=models.Q(charging_session__isnull=False),
            ),
            # The supervisors' list of odd messages, newest first: only flagged rows are in it.
            models.Index(fields=["-received_at", "-id"], name="inbound_flagged_idx", condition=models.Q(flagged=True)),
            # The worker's queue: only the few messages still to apply are in this index.
            models.Index(fields=["id"], name="inbound_pending_idx", condition=PENDING),
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
        constraints = [
            models.UniqueConstraint(fields=["client_address", "minute", "reason"], name="one_refusal_count_per_minute")
        ]
        indexes = [
            models.Index(fields=["minute"], name="refusal_unreported_idx", condition=Q(audit_record_id__isnull=True))
        ]

    def __str__(self) -> str:
        return f"{self.count} refused call(s) from {self.client_address} at {self.minute:%Y-%m-%d %H:%M}"
