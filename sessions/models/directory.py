"""Hubject's EVSE directory as the portal keeps it: operators (with what support adds), EVSEs, pulls.

Pulled with eRoamingPullEvseData 2.3 (sessions/directory/): a full pull at first and on demand,
deltas (LastCall) on a beat schedule. Hubject's values are never overwritten by the support team's:
an operator's escalation e-mail, hotline hours and note are fields of their own, shown beside
Hubject's name and hotline.
"""

from django.db import models

from .search_keys import _search_key_field


class Operator(models.Model):
    """One CPO, by OperatorID as Hubject sends it in its EVSE data ("DE*ABC")."""

    operator_id = models.CharField(max_length=20, unique=True)
    # "DE*ABC" and "DEABC" are one operator (sessions.oicp.ids.operator_key): sessions name it either way.
    operator_key = models.CharField(max_length=20, unique=True)
    name = models.CharField(max_length=250, blank=True)  # OperatorName
    hotline = models.CharField(max_length=40, blank=True)  # HotlinePhoneNumber of its EVSEs (the newest seen)
    evse_count = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(null=True, blank=True)  # the last pull that changed it
    # What Hubject does not know, added by support admins (audited); never written by a pull.
    escalation_email = models.EmailField(blank=True)
    hotline_hours = models.CharField(max_length=200, blank=True)
    internal_note = models.TextField(blank=True)

    class Meta:
        ordering = ["operator_id"]
        permissions = [("change_operator_contact", "Can add what Hubject does not know about a CPO")]

    def __str__(self) -> str:
        return f"{self.operator_id} {self.name}".strip()


class EvseRecord(models.Model):
    """One EVSE from Hubject's EVSE data: the station it is at, where, and how to reach its CPO."""

    evse_id = models.CharField(max_length=64, unique=True)  # as Hubject sent it
    evse_key = _search_key_field("evse_id", 64)  # as the agent types it (sessions.oicp.ids.id_search_key)
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="evses")
    charging_station_id = models.CharField(max_length=100, blank=True)
    station_name = models.CharField(max_length=300, blank=True)  # ChargingStationNames: the first given
    street = models.CharField(max_length=200, blank=True)
    house_number = models.CharField(max_length=20, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    city = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=3, blank=True)  # ISO 3166-1 alpha-3, as Hubject sends it
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    hotline = models.CharField(max_length=40, blank=True)
    plugs = models.JSONField(default=list, blank=True)
    facilities = models.JSONField(default=list, blank=True)  # ChargingFacilities
    authentication_modes = models.JSONField(default=list, blank=True)
    accessibility = models.CharField(max_length=60, blank=True)
    is_open_24_hours = models.BooleanField(null=True)
    opening_times = models.JSONField(default=list, blank=True)
    is_hubject_compatible = models.BooleanField(null=True)
    hubject_last_update = models.DateTimeField(null=True, blank=True)  # Hubject's lastUpdate
    # The whole record as Hubject sent it: anything the portal does not model is kept here.
    raw = models.JSONField(default=dict, blank=True)
    # Name, street, house number, postal code and city, lower case, accents folded: the place search.
    search_text = models.TextField(blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["evse_id"]
        indexes = [models.Index(fields=["evse_key"], name="evse_key_idx")]

    def __str__(self) -> str:
        return self.evse_id


class PlaceWord(models.Model):
    """One word of the EVSEs' `search_text` (the place search's vocabulary): a misspelt word of a query
    is corrected to the words within one edit found here, by the index on the word's start or on its
    end (`drow`, the word reversed), before the full-text index finds the EVSEs. Written by the pull."""

    word = models.CharField(max_length=64, unique=True)
    drow = models.CharField(max_length=64, db_index=True)

    def __str__(self) -> str:
        return self.word


class EvsePullRun(models.Model):
    """One pull of Hubject's EVSE data: what it asked for, how it ended and what it counted."""

    class Kind(models.TextChoices):
        FULL = "FULL", "Full pull"
        DELTA = "DELTA", "Delta pull (LastCall)"

    kind = models.CharField(max_length=5, choices=Kind.choices)
    trigger = models.CharField(max_length=20)  # "beat", "command", "admin"
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    last_call = models.DateTimeField(null=True, blank=True)  # the LastCall sent (deltas)
    pages = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    ok = models.BooleanField(null=True)  # None while running; False: a page failed or a record was refused
    failure = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"
