"""Django admin: read-only views of the domain, plus the remote stop as a bulk action.

Nothing here writes directly: the stop action goes through `services.request_remote_stop`,
with the same eligibility rules and the same audit records as the agent's screen.

Every ModelAdmin shows datetimes in local time with the UTC offset (`admin_base.py`, also for the
other apps' admin pages). templates/admin/base_site.html adds the environment badge to every page.
"""

import json

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from . import services
from .admin_base import PortalModelAdmin, ReadOnlyAdmin, local_time
from .inbound import selectors as selectors_anomalies
from .models import (
    AuditCheckpoint,
    AuditExport,
    AuditRecord,
    AuditVerification,
    ChargeDetailRecord,
    ChargingSession,
    EvsePullRun,
    EvseRecord,
    InboundMessage,
    LegalHold,
    Operator,
    RemoteStopRequest,
)
from .oicp.anomalies import KINDS
from .stops.forms import HISTORY_IDS_MAX, AdminRemoteStopForm, ids_param
from .stops.presenters import refusal_text, stop_blocker

# --- the bulk stop (shaped like Django's delete_selected) ---------------------------------------


def _queued_message(request, stop_ids: list[int]) -> str:
    """ "3 stops queued for Hubject PRODUCTION", linking to the stop history of exactly those requests."""
    count = len(stop_ids)
    text = f"{count} stop{pluralize(count)} queued for Hubject {settings.PORTAL_ENVIRONMENT}."
    if not request.user.has_perm("charging_sessions.view_remotestoprequest"):
        return text
    shown = sorted(stop_ids)[:HISTORY_IDS_MAX]
    url = f"{reverse('charging_sessions:stop-history')}?ids={ids_param(shown)}"
    link_text = (
        "Follow their outcomes in the stop history"
        if len(shown) == count
        else f"Follow the first {len(shown)} in the stop history"
    )
    return format_html('{} <a href="{}">{}</a>.', text, url, link_text)


@admin.action(description="Stop selected sessions via Hubject…", permissions=["remote_stop"])
def stop_selected_sessions(modeladmin, request, queryset):
    """A confirmation page listing the sessions (which will be sent, which cannot and why), then the stops."""
    sessions = list(queryset.order_by("pk"))
    form = AdminRemoteStopForm(request.POST if request.POST.get("post") else None)
    if request.POST.get("post") and form.is_valid():
        queued, refused = [], []
        for charging_session in sessions:
            try:
                stop = services.request_remote_stop(
                    charging_session_id=charging_session.pk, acting_user=request.user, **form.cleaned_data
                ).stop_request
                queued.append(stop.pk)
            except services.StopNotAllowed as refusal:
                refused.append(f"{charging_session.evse_id}: {refusal_text(refusal)}")
        if queued:
            modeladmin.message_user(request, _queued_message(request, queued), messages.SUCCESS)
        for line in refused:
            modeladmin.message_user(request, f"Not sent: {line}", messages.WARNING)
        return None
    rows = [
        {"session": cs, "blocker": stop_blocker(charging_session=cs), "started": local_time(cs.started_at)}
        for cs in sessions
    ]
    sendable = sum(1 for row in rows if not row["blocker"])
    form.fields["reason"].widget.attrs["autofocus"] = True  # as the agent's dialog: the reason first
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Stop these charging sessions?",
        "opts": modeladmin.model._meta,
        "rows": rows,
        "sendable": sendable,
        "blocked": len(rows) - sendable,
        "form": form,
        "queryset": queryset,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action_name": "stop_selected_sessions",
        "back_url": request.get_full_path(),
    }
    return TemplateResponse(request, "admin/charging_sessions/chargingsession/stop_selected_confirmation.html", context)


@admin.register(ChargingSession)
class ChargingSessionAdmin(ReadOnlyAdmin):
    list_display = ["session_id", "evse_id", "operator_id", "status", "started_at", "energy_kwh", "last_update_at"]
    list_filter = ["status", "operator_id"]
    search_fields = ["session_id", "evse_id", "emp_partner_session_id", "cpo_partner_session_id"]
    date_hierarchy = "started_at"
    actions = [stop_selected_sessions]

    def has_remote_stop_permission(self, request):
        return request.user.has_perm("charging_sessions.request_remote_stop")


@admin.register(RemoteStopRequest)
class RemoteStopRequestAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "charging_session",
        "requested_by",
        "reason",
        "state",
        "oicp_code",
        "attempt_count",
        "requested_at",
    ]
    list_filter = ["state", "reason", "oicp_code", "confirmed_by", "outcome_unknown", "charging_session__operator_id"]
    search_fields = [
        "charging_session__session_id",
        "charging_session__evse_id",
        "case_reference",
        "correlation_id",
        "process_id",
    ]
    list_select_related = ["charging_session", "requested_by"]
    date_hierarchy = "requested_at"


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
    list_display = ["pk", "occurred_at", "event_type", "actor", "charging_session", "stop_request", "correlation_id"]
    list_filter = ["event_type", "charging_session__operator_id"]
    search_fields = [
        "=correlation_id",
        "charging_session__session_id",
        "charging_session__evse_id",
        "stop_request__case_reference",
        "=record_hash",
    ]
    list_select_related = ["actor", "charging_session", "stop_request"]
    date_hierarchy = "occurred_at"
    exclude = ["data"]
    readonly_fields = ["data_as_json"]

    @admin.display(description="data")
    def data_as_json(self, obj: AuditRecord) -> str:
        # `data` is a text field holding canonical JSON: show it indented, as JSON (not as a dict).
        return format_html("<pre>{}</pre>", json.dumps(obj.data, ensure_ascii=False, indent=2, sort_keys=True))


# --- inbound messages, CDRs and the audit trail's own records -------------------------------------


class AuditTrailViewMixin:
    """Visible to whoever may see the audit records (admin, supervisor, auditor)."""

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("charging_sessions.view_auditrecord") or super().has_view_permission(request, obj)

    def has_module_permission(self, request):
        return self.has_view_permission(request) or super().has_module_permission(request)


class InboundAppliedFilter(admin.SimpleListFilter):
    """Where a message is in the worker's queue (OICP_INBOUND_APPLY=worker)."""

    title = "applied"
    parameter_name = "applied"

    def lookups(self, request, model_admin):
        return [("yes", "Applied"), ("waiting", "Waiting for the worker"), ("error", "Could not be applied")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(applied_at__isnull=False)
        if self.value() == "waiting":
            return queryset.pending()
        if self.value() == "error":
            return queryset.exclude(apply_error="")
        return queryset


class AnomalyCodeFilter(admin.SimpleListFilter):
    """Messages whose anomalies include one code (sessions.oicp.anomalies.KINDS).

    Matched in the list's JSON text, the same on SQLite (no JSON containment there) and PostgreSQL.
    """

    title = "anomaly"
    parameter_name = "anomaly"

    def lookups(self, request, model_admin):
        return list(KINDS.items())

    def queryset(self, request, queryset):
        if self.value() in KINDS:
            return selectors_anomalies.with_anomaly_text(queryset).filter(selectors_anomalies.code_q(self.value()))
        return queryset


@admin.register(InboundMessage)
class InboundMessageAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "kind",
        "session_id",
        "operator_id",
        "charging_session",
        "received_at",
        "applied",
        "anomaly_summary",
        "held_back",
        "remote_addr",
    ]
    list_filter = [InboundAppliedFilter, "kind", "flagged", "held_back", AnomalyCodeFilter, "operator_id"]
    search_fields = ["=session_id", "charging_session__evse_id"]
    list_select_related = ["charging_session"]
    date_hierarchy = "received_at"
    fields = [
        "kind",
        "session_id",
        "charging_session",
        "operator_id",
        "path_operator_id",
        "received_at",
        "remote_addr",
        "applied_at",
        "apply_error",
        "applier",
        "claimed_until",
        "flagged",
        "held_back",
        "anomaly_list",
        "raw",
        "parsed",
    ]
    readonly_fields = ["anomaly_list"]

    @admin.display(description="applied", ordering="applied_at")
    def applied(self, obj: InboundMessage) -> str:
        if obj.apply_error:
            return f"not applied: {obj.apply_error[:80]}"
        return local_time(obj.applied_at) if obj.applied_at else "waiting"

    @admin.display(description="anomalies")
    def anomaly_summary(self, obj: InboundMessage) -> str:
        anomalies = selectors_anomalies.labelled(obj.anomalies)
        if not anomalies:
            return "—"
        first = anomalies[0]["text"] or anomalies[0]["label"]
        first = first if len(first) <= 80 else first[:79] + "…"
        return first if len(anomalies) == 1 else f"{first} (+{len(anomalies) - 1} more)"

    @admin.display(description="anomalies")
    def anomaly_list(self, obj: InboundMessage) -> str:
        anomalies = selectors_anomalies.labelled(obj.anomalies)
        if not anomalies:
            return "none"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{} <small>({}{})</small></li>",
                (
                    (anomaly.get("text", ""), anomaly["label"], f"; {anomaly['field']}" if anomaly.get("field") else "")
                    for anomaly in anomalies
                ),
            ),
        )


@admin.register(ChargeDetailRecord)
class ChargeDetailRecordAdmin(AuditTrailViewMixin, ReadOnlyAdmin):
    list_display = [
        "session_id",
        "evse_id",
        "operator_id",
        "session_start",
        "session_end",
        "consumed_energy_kwh",
        "source",
        "received_at",
    ]
    list_filter = ["source", "operator_id"]
    search_fields = ["=session_id", "evse_id"]
    date_hierarchy = "received_at"


@admin.register(AuditExport)
class AuditExportAdmin(AuditTrailViewMixin, ReadOnlyAdmin):
    list_display = ["pk", "requested_at", "requested_by", "format", "state", "row_count", "sha256"]
    list_filter = ["format", "state"]
    search_fields = ["=sha256", "requested_by__username", "filter_summary"]
    list_select_related = ["requested_by"]
    date_hierarchy = "requested_at"


@admin.register(AuditVerification)
class AuditVerificationAdmin(AuditTrailViewMixin, ReadOnlyAdmin):
    list_display = ["pk", "started_at", "finished_at", "ok", "records_checked", "first_broken_id", "detail"]
    list_filter = ["ok"]
    date_hierarchy = "started_at"


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(AuditTrailViewMixin, ReadOnlyAdmin):
    list_display = ["pk", "created_at", "purged_before", "purged_count", "last_purged_id", "last_purged_hash", "actor"]
    list_select_related = ["actor"]


@admin.action(description="Release the selected legal holds", permissions=["release"])
def release_legal_holds(modeladmin, request, queryset):
    released = 0
    for hold in queryset.filter(released_at__isnull=True):
        services.release_legal_hold(hold_id=hold.pk, acting_user=request.user)
        released += 1
    modeladmin.message_user(request, f"{released} legal hold(s) released.", messages.SUCCESS)


@admin.register(LegalHold)
class LegalHoldAdmin(AuditTrailViewMixin, PortalModelAdmin):
    """Superusers set holds (add) and release them (action), both through the audited service."""

    list_display = ["pk", "reason", "set_by", "set_at", "released_at", "released_by"]
    list_filter = [("released_at", admin.EmptyFieldListFilter)]
    list_select_related = ["set_by", "released_by"]
    fields = ["reason"]
    actions = [release_legal_holds]

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_release_permission(self, request):
        return request.user.is_superuser

    def get_fields(self, request, obj=None):
        return ["reason"] if obj is None else ["reason", "set_by", "set_at", "released_at", "released_by"]

    def save_model(self, request, obj, form, change):
        hold = services.set_legal_hold(reason=form.cleaned_data["reason"], acting_user=request.user)
        obj.pk, obj.set_by, obj.set_at = hold.pk, hold.set_by, hold.set_at


# --- Hubject's EVSE directory: what the pull brought, and what support adds to a CPO -------------

CONTACT_PERMISSION = "charging_sessions.change_operator_contact"


class DirectoryViewMixin:
    """Holders of change_operator_contact (support admins, supervisors) see the directory too."""

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or request.user.has_perm(CONTACT_PERMISSION)

    def has_module_permission(self, request):
        return super().has_module_permission(request) or request.user.has_perm(CONTACT_PERMISSION)


@admin.register(Operator)
class OperatorAdmin(DirectoryViewMixin, PortalModelAdmin):
    """Hubject's fields read-only; the escalation e-mail, hotline hours and note saved through the
    audited service (`services.change_operator_contact`), never by a pull."""

    list_display = ["operator_id", "name", "hotline", "evse_count", "escalation_email", "hotline_hours"]
    search_fields = ["operator_id", "operator_key", "name"]
    hubject_fields = ["operator_id", "name", "hotline", "evse_count", "updated_at"]
    fieldsets = [
        ("From Hubject's EVSE data", {"fields": hubject_fields}),
        ("Added by support (audited)", {"fields": ["escalation_email", "hotline_hours", "internal_note"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        if self.has_change_permission(request, obj):
            return self.hubject_fields
        return [*self.hubject_fields, "escalation_email", "hotline_hours", "internal_note"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm(CONTACT_PERMISSION)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved = services.change_operator_contact(
            operator_id=obj.pk,
            acting_user=request.user,
            escalation_email=data.get("escalation_email", ""),
            hotline_hours=data.get("hotline_hours", ""),
            internal_note=data.get("internal_note", ""),
        )
        for name in ("escalation_email", "hotline_hours", "internal_note"):
            setattr(obj, name, getattr(saved, name))


@admin.register(EvseRecord)
class EvseRecordAdmin(DirectoryViewMixin, ReadOnlyAdmin):
    list_display = ["evse_id", "operator", "station_name", "postal_code", "city", "country", "updated_at"]
    list_select_related = ["operator"]
    list_filter = ["country"]
    search_fields = ["evse_id", "evse_key", "search_text"]
    show_full_result_count = False


@admin.register(EvsePullRun)
class EvsePullRunAdmin(DirectoryViewMixin, ReadOnlyAdmin):
    list_display = [
        "pk",
        "kind",
        "trigger",
        "started_at",
        "finished_at",
        "pages",
        "added",
        "changed",
        "unchanged",
        "deleted",
        "refused",
        "ok",
    ]
    list_filter = ["kind", "ok"]
