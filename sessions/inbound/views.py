"""The supervisors' list of message anomalies and one flagged message as sent. Read only.

Who: whoever may see every agent's stops (`view_all_remote_stops`: support admins, supervisors,
auditors; not agents) and may view inbound messages.
"""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.functional import cached_property
from django.views.decorators.http import require_GET

from ..charging import selectors
from . import selectors as selectors_anomalies
from .forms import AnomalyFilterForm

PAGE_SIZE = 50
PERMISSIONS = ["charging_sessions.view_all_remote_stops", "charging_sessions.view_inboundmessage"]


class _CountedPaginator(Paginator):
    """A paginator told its row count (the counts query has it already): no second COUNT."""

    def __init__(self, object_list, per_page, *, count: int):
        super().__init__(object_list, per_page)
        self._known_count = count

    @cached_property
    def count(self) -> int:
        return self._known_count


def _querystring(request: HttpRequest, *drop: str) -> str:
    params = request.GET.copy()
    for name in drop:
        params.pop(name, None)
    return params.urlencode()


def _refused(anomalies: list[dict]) -> bool:
    return any(anomaly["code"] == selectors_anomalies.REFUSED for anomaly in anomalies)


def _row(message) -> dict:
    anomalies = selectors_anomalies.labelled(message.anomalies)
    session = message.charging_session
    return {
        "message": message,
        "anomalies": anomalies,
        "refused": _refused(anomalies),
        # The EvseID the message named (a held-back one names another EVSE), else its session's.
        "evse_id": message.sent_evse_id or (session.evse_id if session else ""),
        "operator_id": message.operator_id or (session.operator_id if session else ""),
    }


@require_GET
@login_required
@permission_required(PERMISSIONS, raise_exception=True)
def message_anomalies(request: HttpRequest) -> HttpResponse:
    form = AnomalyFilterForm(request.GET)
    filters = form.filters()
    counts = selectors_anomalies.anomaly_counts(filters=filters)
    messages = selectors_anomalies.flagged_messages(filters=filters)
    page = _CountedPaginator(messages, PAGE_SIZE, count=counts.total).get_page(request.GET.get("page"))
    context = {
        "form": form,
        "page": page,
        "rows": [_row(message) for message in page.object_list],
        "counts": counts,
        "period": form.period_words(filters),
        "operators": selectors.operator_ids(),
        "querystring": _querystring(request, "page"),
        "code_base": _querystring(request, "page", "code"),
        "filtered": any(value for key, value in request.GET.items() if key != "page"),
        "has_errors": bool(form.errors),
    }
    return render(request, "sessions/anomalies.html", context)


@require_GET
@login_required
@permission_required(PERMISSIONS, raise_exception=True)
def anomaly_message(request: HttpRequest, pk: int) -> HttpResponse:
    """One flagged message: its anomalies and its body exactly as it came (escaped, never run)."""
    message = selectors_anomalies.get_flagged_message(pk=pk)
    if message is None:
        raise Http404("No such flagged message")
    try:
        indented = json.dumps(json.loads(message.raw), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        indented = None  # not JSON (a refused CDR may be anything): the body as sent is all there is
    context = {
        "message": message,
        "anomalies": selectors_anomalies.labelled(message.anomalies),
        "refused": _refused(selectors_anomalies.labelled(message.anomalies)),
        "indented": indented if indented != message.raw else None,
        "back": request.GET.get("back", "") if request.GET.get("back", "").startswith("?") else "",
    }
    return render(request, "sessions/anomaly_message.html", context)
