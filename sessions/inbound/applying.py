"""Applying claimed messages, the whole groups of one or more sessions: one transaction, each
session's messages in arrival order, one audit write.

The messages' rows are locked first and must still be pending and this applier's: a message applied
meanwhile, or a session taken over after this applier's claim lapsed, is left alone, so each
message is applied exactly once. A batch is applied optimistically first, with no savepoint per
message; when one fails, the batch is rolled back and applied again with each message in its own
savepoint (the atomic block of `record_charging_notification` / `record_cdr`): the one that fails
is marked with its error, logged and counted, and the rest of its session's messages are still
applied, in order, in the same transaction. The audit records of the whole transaction are written once, last (`record_audits`),
so the audit chain's lock is taken once per transaction, not once per message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import OperationalError, transaction

from ..audit.records import AuditEntry, record_audits
from ..models import InboundMessage
from ..oicp import inbound
from .services import record_cdr, record_charging_notification
from .services.batch import SessionBatch
from .services.steps import batched

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupOutcome:
    applied: int = 0
    failed: int = 0


class _BatchFailed(Exception):
    """A message failed in an optimistic batch: roll the batch back and apply it carefully."""


def apply_group(message_ids: list[int], *, applier: str) -> GroupOutcome:
    """Apply these messages (claimed by `applier`; whole sessions' groups) in arrival order, in one
    transaction. Arrival order over all of them keeps each session's own order.

    Optimistically first, as one `SessionBatch` (a few statements for the whole batch); if any
    message fails, or the batch's writes do (another process created one of its sessions), that
    transaction is rolled back and the batch is applied again with a savepoint per message, so only
    the failing one is set aside. An OperationalError (the database went away, SQLite busy past its
    timeout) rolls the whole batch back: its messages stay pending for the next run.
    """
    try:
        return _apply(message_ids, applier=applier, careful=False)
    except _BatchFailed as error:
        cause = error.__cause__
        logger.info(
            "inbound batch of %s messages applied one by one: %s: %s", len(message_ids), type(cause).__name__, cause
        )
        return _apply(message_ids, applier=applier, careful=True)


def _apply(message_ids: list[int], *, applier: str, careful: bool) -> GroupOutcome:
    applied, failed = 0, 0
    with transaction.atomic():
        messages = list(
            InboundMessage.objects.select_for_update()
            .pending()
            .filter(pk__in=message_ids, applier=applier)
            .order_by("id")
        )
        audit: list[AuditEntry] = []
        if careful:
            for message in messages:
                entries: list[AuditEntry] = []
                try:
                    _apply_message(message, audit_to=entries)
                except OperationalError:
                    raise
                except Exception as error:  # noqa: BLE001 - keep the queue moving; the message says what went wrong
                    logger.exception("inbound message %s could not be applied", message.pk)
                    reason = f"{type(error).__name__}: {error}"[:2000]
                    InboundMessage.objects.filter(pk=message.pk).update(apply_error=reason)
                    failed += 1
                    continue
                audit += entries
                applied += 1
        else:
            try:
                batch = SessionBatch.load(
                    (message.session_id for message in messages),
                    with_cdrs=any(message.kind == InboundMessage.Kind.CDR for message in messages),
                )
                with batched(batch):
                    for message in messages:
                        _apply_message(message, audit_to=audit)
                batch.write()
            except OperationalError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure: the careful path sets the message aside
                raise _BatchFailed from error
            applied = len(messages)
        record_audits(audit)
    return GroupOutcome(applied=applied, failed=failed)


def _apply_message(message: InboundMessage, *, audit_to: list[AuditEntry]) -> None:
    # Parsed again from `raw` (the endpoint stored it unparsed); parsing writes nothing, and the
    # service does all its writes in one atomic block, the message's savepoint.
    body = message.raw.encode()
    if message.kind == InboundMessage.Kind.CDR:
        _, cdr = inbound.parse_charge_detail_record(
            body, path_operator_id=message.path_operator_id or message.operator_id
        )
        record_cdr(
            cdr=cdr, raw=message.raw, source="PUSH", remote_addr=message.remote_addr, message=message, audit_to=audit_to
        )
    else:
        _, notification = inbound.parse_charging_notification(body)
        record_charging_notification(
            notification=notification,
            raw=message.raw,
            remote_addr=message.remote_addr,
            message=message,
            audit_to=audit_to,
        )
