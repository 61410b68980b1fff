"""Reads for the supervisors' list of message anomalies (flagged inbound messages) and its counts.

Every read is a constant number of queries, whatever the number of rows:
- the page of messages: one query, newest first, served by the partial index `inbound_flagged_idx`
  (only flagged rows are in it); `raw` and `parsed` are not read for the list, only the EvseID
  as sent is taken out of `parsed` in the database;
- the counts: ONE aggregate query over the same filtered rows, a conditional COUNT per anomaly
  code (`KINDS`), held back and refused. The codes live in a JSON list, so each is matched in the
  list's JSON text: `"code": "<code>"` (the same text on SQLite, which stores `json.dumps`
  output, and on PostgreSQL, whose jsonb prints `"key": value`). A quote inside an anomaly's
  text or field is escaped (`\\"`), so that text can never be taken for a code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from ..models import ChargingSession, InboundMessage
from ..oicp.anomalies import HELD_BACK, KINDS

REFUSED = "refused"  # the anomaly code a refused pulled CDR carries (sessions.services.reconciliation)
_TEXT = "anomalies_text"  # the annotation holding the anomaly list as JSON text


@dataclass(frozen=True)
class AnomalyFilters:
    date_from: date | None = None  # both days inclusive, in the portal's time zone
    date_to: date | None = None
    kind: str = ""  # InboundMessage.Kind
    code: str = ""  # a key of KINDS
    operator_id: str = ""  # the message's OperatorID or its session's
    held_back_only: bool = False
    refused_only: bool = False


@dataclass(frozen=True)
class CodeCount:
    code: str
    label: str  # KINDS' words for a count of them
    count: int
    held_back: bool  # a code that means the message was set aside


@dataclass(frozen=True)
class AnomalyCounts:
    total: int  # flagged messages
    held_back: int
    refused: int
    by_code: list[CodeCount]  # codes seen at least once, most frequent first (messages, not anomalies)


def code_q(code: str) -> Q:
    """The message's anomaly list names `code`; needs `with_anomaly_text` on the queryset."""
    return Q(**{f"{_TEXT}__contains": f'"code": "{code}"'})


def with_anomaly_text(messages: QuerySet[InboundMessage]) -> QuerySet[InboundMessage]:
    """Alias the anomaly list as JSON text (not selected), for `code_q` (also used by the admin's code filter)."""
    return messages.alias(**{_TEXT: Cast("anomalies", output_field=TextField())})


def _start_of_day(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _filtered(filters: AnomalyFilters) -> QuerySet[InboundMessage]:
    messages = with_anomaly_text(InboundMessage.objects.filter(flagged=True))
    if filters.date_from:
        messages = messages.filter(received_at__gte=_start_of_day(filters.date_from))
    if filters.date_to:
        messages = messages.filter(received_at__lt=_start_of_day(filters.date_to + timedelta(days=1)))
    if filters.kind:
        messages = messages.filter(kind=filters.kind)
    if filters.code:
        messages = messages.filter(code_q(filters.code))
    if filters.operator_id:
        # Sessions of the CPO through their own index, then the messages (flagged ones only).
        operator_sessions = ChargingSession.objects.filter(operator_id=filters.operator_id).order_by().values("pk")
        messages = messages.filter(Q(operator_id=filters.operator_id) | Q(charging_session_id__in=operator_sessions))
    if filters.held_back_only:
        messages = messages.filter(held_back=True)
    if filters.refused_only:
        messages = messages.filter(code_q(REFUSED))
    return messages


def flagged_messages(*, filters: AnomalyFilters) -> QuerySet[InboundMessage]:
    """Flagged messages matching the filters, newest first, with their session (one query a page)."""
    return (
        _filtered(filters)
        .select_related("charging_session")
        .defer("raw", "parsed")
        .annotate(sent_evse_id=KeyTextTransform("EvseID", "parsed"))
        .order_by("-received_at", "-id")
    )


def anomaly_counts(*, filters: AnomalyFilters) -> AnomalyCounts:
    """Flagged, held back and refused messages, and messages per anomaly code: one query."""
    codes = list(KINDS)
    per_code = {f"code_{index}": Count("pk", filter=code_q(code)) for index, code in enumerate(codes)}
    totals = (
        _filtered(filters)
        .order_by()
        .aggregate(total=Count("pk"), held_back=Count("pk", filter=Q(held_back=True)), **per_code)
    )
    by_code = [
        CodeCount(code, KINDS[code], totals[f"code_{index}"], code in HELD_BACK)
        for index, code in enumerate(codes)
        if totals[f"code_{index}"]
    ]
    by_code.sort(key=lambda item: -item.count)  # stable: ties keep KINDS' order
    refused = next((item.count for item in by_code if item.code == REFUSED), 0)
    return AnomalyCounts(total=totals["total"], held_back=totals["held_back"], refused=refused, by_code=by_code)


def get_flagged_message(*, pk: int) -> InboundMessage | None:
    return InboundMessage.objects.select_related("charging_session").filter(pk=pk, flagged=True).first()


def labelled(anomalies: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A message's anomalies for `sessions/_anomaly_list.html`: each with its code's label from KINDS."""
    items = []
    for anomaly in anomalies or []:
        if not isinstance(anomaly, dict):
            continue
        code = str(anomaly.get("code", ""))
        items.append({**anomaly, "code": code, "label": KINDS.get(code, code), "held_back": code in HELD_BACK})
    return items


def pending_inbound_messages() -> int:
    """Stored messages the worker has still to apply."""
    return InboundMessage.objects.pending().count()
