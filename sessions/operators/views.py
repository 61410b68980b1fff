"""The CPO pages: the supervisors' overview of every CPO's stop record (and its CSV), and one CPO's
page with its charts. Thin: check permission, read the period, call the selectors.

Who: everyone who sees every agent's stops (support admins, supervisors, auditors); agents get 403.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from ..audit.export_formats import inert_line, neutralise
from ..listing import PAGE_SIZE, querystring, sort_links
from ..oicp.status_codes import describe
from ..stops.presenters.cards import code_meaning
from . import charts, presenters, selectors
from .forms import CUSTOM, PRESETS, OperatorPeriodForm

SEES_ALL = ["charging_sessions.view_all_remote_stops", "charging_sessions.view_remotestoprequest"]
DEFAULT_SORT = "-failure"
# Sortable columns and the direction of their first click ("-": largest first).
SORTABLE = {
    "operator": "",
    "sent": "-",
    "confirmed": "-",
    "rejected": "-",
    "failed": "-",
    "unconfirmed": "-",
    "open": "-",
    "success": "-",
    "failure": "-",
    "median": "-",
    "evses": "-",
}
PRESET_LABELS = {"last7": "Last 7 days", "last30": "Last 30 days", "last90": "Last 90 days"}


def _sort_value(record: selectors.OperatorRecord, key: str):
    """A record's value for a sort key; records without a value (no stops, none confirmed) last."""
    value = {
        "operator": record.operator_id,
        "success": record.success_rate,
        "failure": record.failure_rate,
        "median": record.median,
        "evses": record.evse_count,
    }.get(key, getattr(record, key, None))
    return value


def sort_records(records: list[selectors.OperatorRecord], sort: str) -> list[selectors.OperatorRecord]:
    """By the sort key (then by stops sent, largest first, then OperatorID); empty values last."""
    key = sort.lstrip("-") if sort.lstrip("-") in SORTABLE else DEFAULT_SORT.lstrip("-")
    descending = (sort if sort.lstrip("-") in SORTABLE else DEFAULT_SORT).startswith("-")
    ordered = sorted(records, key=lambda r: (-r.sent, r.operator_id))
    present = [r for r in ordered if _sort_value(r, key) is not None]
    missing = [r for r in ordered if _sort_value(r, key) is None]
    present.sort(key=lambda r: _sort_value(r, key), reverse=descending)  # stable: ties keep the volume order
    return present + missing


def _period_context(request: HttpRequest, form: OperatorPeriodForm) -> dict:
    period, key, as_asked = form.chosen_period()
    keep = querystring(request, "page", "period", "date_from", "date_to")
    presets = [
        {
            "key": preset,
            "label": PRESET_LABELS[preset],
            "url": "?" + "&".join(part for part in (keep, f"period={preset}") if part),
            "current": preset == key and as_asked,
        }
        for preset in PRESETS
    ]
    return {
        "form": form,
        "period": period,
        "period_key": key,
        "period_as_asked": as_asked,
        "period_label": PRESET_LABELS.get(key) if key != CUSTOM else None,
        "presets": presets,
    }


def history_url(operator_id: str, period: selectors.Period, **filters: str) -> str:
    params = {
        "operator": operator_id,
        "date_from": period.date_from.isoformat(),
        "date_to": period.date_to.isoformat(),
        **filters,
    }
    return reverse("charging_sessions:stop-history") + "?" + urlencode(params)


def _with_query(url: str, query: str) -> str:
    return f"{url}?{query}" if query else url


def operator_url(operator_id: str, period_query: str) -> str:
    return _with_query(reverse("charging_sessions:operator-detail", kwargs={"operator_id": operator_id}), period_query)


def _period_query(request: HttpRequest, as_asked: bool) -> str:
    """The period part of this page's address, for the links to a CPO's page (none when it had an error)."""
    if not as_asked:
        return ""
    params = {name: request.GET[name] for name in ("period", "date_from", "date_to") if request.GET.get(name)}
    return urlencode(params)


@require_GET
@login_required
@permission_required(SEES_ALL, raise_exception=True)
def operator_overview(request: HttpRequest) -> HttpResponse:
    form = OperatorPeriodForm(request.GET or None)
    context = _period_context(request, form)
    period = context["period"]
    sort = form.chosen_sort(DEFAULT_SORT) if form.is_bound else DEFAULT_SORT
    records = sort_records(selectors.operator_overview(period=period), sort)
    page = Paginator(records, PAGE_SIZE).get_page(request.GET.get("page"))
    period_query = _period_query(request, context["period_as_asked"])
    context |= {
        "page": page,
        "rows": [
            (
                record,
                presenters.record_cells(record),
                operator_url(record.operator_id, period_query),
                history_url(record.operator_id, period),
            )
            for record in page.object_list
        ],
        "total": len(records),
        "period_words": presenters.period_words(period),
        "sorts": sort_links(request, sort, SORTABLE, default=DEFAULT_SORT, first=SORTABLE),
        "querystring": querystring(request, "page"),
        "csv_url": _with_query(reverse("charging_sessions:operator-overview-csv"), querystring(request, "page")),
    }
    return render(request, "operators/overview.html", context)


CSV_HEADER = [
    "OperatorID",
    "Name",
    "EVSEs",
    "Stops sent",
    "Accepted",
    "Confirmed",
    "Accepted, not yet confirmed",
    "Accepted, never confirmed",
    "Rejected",
    "Failed",
    "Still being sent",
    "Success rate (%)",
    "Failure rate (%)",
    "Median to confirmation (s)",
    "90th percentile to confirmation (s)",
]


def _percent(rate: float | None) -> str:
    return "" if rate is None else f"{rate * 100:.1f}"


def _seconds(duration: timedelta | None) -> str:
    return "" if duration is None else f"{duration.total_seconds():.1f}"


def overview_csv_rows(records: list[selectors.OperatorRecord]) -> list[list]:
    """The overview as CSV rows: every text cell made inert for spreadsheets (`neutralise`)."""
    rows = []
    for r in records:
        rows.append(
            [
                neutralise(r.operator_id),
                neutralise(r.name),
                "" if r.evse_count is None else r.evse_count,
                r.sent,
                r.accepted,
                r.confirmed,
                r.open,
                r.unconfirmed,
                r.rejected,
                r.failed,
                r.in_flight,
                _percent(r.success_rate),
                _percent(r.failure_rate),
                _seconds(r.median),
                _seconds(r.p90),
            ]
        )
    return rows


@require_GET
@login_required
@permission_required(SEES_ALL, raise_exception=True)
def operator_overview_csv(request: HttpRequest) -> HttpResponse:
    """The overview's table as CSV, in the page's order, for the same period; a first comment line says
    which period (written inert: no spreadsheet can read a formula into it)."""
    form = OperatorPeriodForm(request.GET or None)
    period, _, _ = form.chosen_period()
    sort = form.chosen_sort(DEFAULT_SORT) if form.is_bound else DEFAULT_SORT
    records = sort_records(selectors.operator_overview(period=period), sort)
    out = io.StringIO()
    out.write(inert_line(f"# Stops per CPO, requested {period.date_from:%Y-%m-%d} to {period.date_to:%Y-%m-%d}"))
    out.write("\r\n")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(overview_csv_rows(records))
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    name = f"stops-per-cpo-{period.date_from:%Y%m%d}-{period.date_to:%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_GET
@login_required
@permission_required(SEES_ALL, raise_exception=True)
def operator_detail(request: HttpRequest, operator_id: str) -> HttpResponse:
    operator_id = operator_id.strip().upper()
    if len(operator_id) > 10 or not selectors.operator_known(operator_id):
        raise Http404("The portal has no session of this CPO")
    form = OperatorPeriodForm(request.GET or None)
    context = _period_context(request, form)
    period = context["period"]
    record = selectors.operator_record(operator_id=operator_id, period=period)
    # Its name, EVSE count and contact details from Hubject's EVSE directory (None when not listed).
    operator = next(iter(selectors.with_directory([record]).values()), None)
    weeks = selectors.weekly_trend(operator_id=operator_id, period=period)
    buckets = [(label, count) for (label, _, _), count in zip(selectors.BUCKETS, record.buckets, strict=True)]
    codes = [
        (code_meaning(describe(code)), count, history_url(operator_id, period, code=code))
        for code, count in selectors.refusal_codes(operator_id=operator_id, period=period)
    ]
    outcome_links = {
        key: history_url(operator_id, period, **({"state": states[0]} if len(states) == 1 else {}))
        for key, _, states in selectors.OUTCOMES
    }
    context |= {
        "record": record,
        "operator": operator,
        "cells": presenters.record_cells(record),
        "weeks": weeks,
        "summaries": {
            "weekly": presenters.weekly_summary(operator_id, weeks, period),
            "mix": presenters.mix_summary(record),
            "histogram": presenters.histogram_summary(record, buckets),
        },
        "weekly_chart": charts.weekly_chart(weeks),
        "histogram": charts.histogram(record),
        "buckets": buckets,
        "mix": charts.outcome_mix(record),
        "mix_size": (charts.MIX_WIDTH, charts.MIX_HEIGHT),
        "codes": codes,
        "outcome_links": outcome_links,
        "history_url": history_url(operator_id, period),
        "overview_url": _with_query(
            reverse("charging_sessions:operator-overview"), _period_query(request, context["period_as_asked"])
        ),
        "period_words": presenters.period_words(period),
    }
    return render(request, "operators/detail.html", context)
