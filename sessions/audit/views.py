"""The audit trail's screens: the audit-log export (its page, start, progress and download), the chain's
status and "verify now". Thin: check permission, validate input, call one selector or service."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from .. import services
from ..charging import selectors as charging_selectors
from ..models import AuditExport
from . import export_formats as exports
from . import selectors
from .forms import CUSTOM, FAILED_STOPS, PERIOD_CHOICES, AuditLogFilterForm, StartExportForm, event_groups
from .verification_panel import EXPORT, VIEW_AUDIT, chain_context

# --- audit-log export ------------------------------------------------------------------------------


def _export_page(request: HttpRequest, form: AuditLogFilterForm, *, status: int = 200) -> HttpResponse:
    """What will be exported (summary, row count) and the format; recent exports; the chain's state.
    A form with errors shows them beside their fields and offers nothing to export."""
    filters = form.filters()
    count = selectors.audit_log(filters=filters).count() if filters is not None else None
    context = {
        "form": form,
        "filters": filters,
        "summary": filters.summary() if filters is not None else None,
        "row_count": count,
        "background": count is not None and count > settings.AUDIT_EXPORT_SYNC_MAX_ROWS,
        "threshold": settings.AUDIT_EXPORT_SYNC_MAX_ROWS,
        "formats": AuditExport.Format.choices,
        "chosen_format": form.data.get("format") or AuditExport.Format.CSV,
        "event_groups": event_groups(),
        "chosen_events": set(form.data.getlist("event_type")) if form.is_bound else set(),
        "failed_stops": FAILED_STOPS,
        "periods": PERIOD_CHOICES,
        "chosen_period": (form.data.get("period") or CUSTOM) if form.is_bound else CUSTOM,
        "operators": form.operators,
        "time_zone": timezone.get_default_timezone_name(),
        "exports": selectors.recent_exports(),
        **chain_context(request),
    }
    return render(request, "sessions/audit_export.html", context, status=status)


@require_GET
@login_required
@permission_required(EXPORT, raise_exception=True)
def audit_export(request: HttpRequest) -> HttpResponse:
    if request.htmx and request.GET.get("part") == "exports":
        return render(request, "sessions/_audit_export_list.html", {"exports": selectors.recent_exports()})
    return _export_page(request, AuditLogFilterForm(request.GET or None, operators=charging_selectors.operator_ids()))


@require_POST
@login_required
@permission_required(EXPORT, raise_exception=True)
def start_audit_export(request: HttpRequest) -> HttpResponse:
    form = StartExportForm(request.POST, operators=charging_selectors.operator_ids())
    if not form.is_valid():
        # Said beside the fields it concerns; nothing is exported or recorded.
        return _export_page(request, form, status=400)
    export = services.prepare_audit_export(
        filters=form.filters(), export_format=form.cleaned_data["format"], acting_user=request.user
    )
    if selectors.export_runs_in_background(export):
        services.queue_audit_export(export=export)
        messages.success(
            request, f"Export #{export.pk} of {export.row_count} records is being prepared in the background."
        )
        return redirect("charging_sessions:audit-export-detail", pk=export.pk)
    if export.format == AuditExport.Format.XLSX:
        export = services.write_audit_export(export_id=export.pk)
        return _file_response(export)
    response = StreamingHttpResponse(
        services.stream_audit_export(export=export), content_type=exports.CONTENT_TYPES[export.format]
    )
    response["Content-Disposition"] = f'attachment; filename="audit-log-{export.pk}.{export.format}"'
    response["X-Export-Id"] = str(export.pk)
    response["Cache-Control"] = "no-store"
    return response


def _file_response(export: AuditExport) -> HttpResponse:
    path = selectors.export_path(export)
    if path is None:
        raise Http404("The export file is not available")
    response = FileResponse(
        open(path, "rb"), as_attachment=True, filename=path.name, content_type=exports.CONTENT_TYPES[export.format]
    )
    response["X-Export-Id"] = str(export.pk)
    response["Cache-Control"] = "no-store"
    return response


def _export_for(request: HttpRequest, pk: int) -> AuditExport:
    """The export, for the person who requested it or anyone who may export (supervisor, auditor)."""
    export = selectors.get_export(pk=pk)
    if not request.user.has_perm(EXPORT) and (export is None or export.requested_by_id != request.user.pk):
        raise PermissionDenied
    if export is None:
        raise Http404("No such export")
    return export


@require_GET
@login_required
def audit_export_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress of one export (polled while it runs), then its checksum and download link."""
    export = _export_for(request, pk)
    template = "sessions/_audit_export_progress.html" if request.htmx else "sessions/audit_export_detail.html"
    return render(request, template, {"export": export, "file_ready": selectors.export_path(export) is not None})


@require_GET
@login_required
def audit_export_download(request: HttpRequest, pk: int) -> HttpResponse:
    export = _export_for(request, pk)
    if selectors.export_path(export) is None:
        raise Http404("This export has no file (it is not finished, it was streamed, or the file was removed)")
    services.record_export_download(export=export, acting_user=request.user)
    return _file_response(export)


# --- the audit chain: its state, and "verify now" ------------------------------------------------------


@require_GET
@login_required
@permission_required(VIEW_AUDIT, raise_exception=True)
def audit_chain_status(request: HttpRequest) -> HttpResponse:
    """The chain's state as a fragment: polled while a requested verification waits or runs."""
    return render(request, "sessions/_audit_chain_status.html", chain_context(request))


@require_POST
@login_required
@permission_required(EXPORT, raise_exception=True)
def verify_audit_chain_now(request: HttpRequest) -> HttpResponse:
    """Queue a walk of the chain in the background (or follow the one already queued)."""
    services.request_audit_verification(acting_user=request.user)
    if request.htmx:
        return render(request, "sessions/_audit_chain_status.html", chain_context(request))
    messages.success(request, "The audit trail is being verified in the background; the result appears here.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = reverse("charging_sessions:audit-export")
    return redirect(back)
