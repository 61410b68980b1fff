"""A charging session as the portal knows it (from Hubject's messages or the EMP's feed)."""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from ..oicp import ids
from .search_keys import _partner_key_field, _search_key_field

# Sessions not closed yet (charging, or charging ended without a CDR): the stuck queue's sessions.
# Also the condition of the partial index session_open_update_idx; the queries that should use it
# filter with this very Q, so that PostgreSQL sees their condition implies the index's.
OPEN_SESSION_Q = Q(status__in=["ACTIVE", "CHARGING_ENDED"])


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
            # SQLite reads it per status, stopping each once past the page's LIMIT.
            models.Index(fields=["status", "last_update_at", "id"], name="session_status_stale_idx"),
            # The same on PostgreSQL, which cannot merge the two statuses' ranges in order: the open
            # sessions alone, in one order (a partial index, small: the open sessions only). SQLite
            # ignores it (it picks a partial index only with statistics, which it has none of).
            models.Index(fields=["last_update_at", "id"], condition=OPEN_SESSION_Q, name="session_open_update_idx"),
            # An operator's sessions as ids alone (index-only on PostgreSQL), for the filters that then
            # read those sessions' stops (stop history, stuck queue).
            models.Index(fields=["operator_id", "id"], name="session_operator_idx"),
            # Search as drivers speak. The EVSE and contract keys are searched by prefix too: on
            # PostgreSQL their pattern_ops index serves LIKE 'KEY%' (and =) in any collation; SQLite
            # ignores the opclass and searches the index by range (index_queries.prefix_q). The SessionID
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
