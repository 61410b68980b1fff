"""Claims on stored inbound messages: which applier applies which sessions' messages, for how long.

Order matters only within a session (Start before Progress before End before CDR), so appliers
work in parallel on different sessions. A claim takes *every* pending message of a session, and a
session with a live claim on any of its pending messages is skipped: a later message of session S
is never applied while another applier still holds an earlier one of S.

The claim is a lease: `applier` and `claimed_until` set in one UPDATE. Claiming is serialised (on
PostgreSQL a transaction-level advisory lock, on SQLite the IMMEDIATE transaction's write lock):
it is two short statements per batch, and without it two concurrent claims could each see the
other's session as free (a READ COMMITTED snapshot taken before the other commits). A claim lapses
CLAIM_SECONDS after it was taken or renewed, so a crashed applier holds up its sessions for seconds.

Correctness never depends on the lease, only liveness: a message is applied in a transaction
that locks its row and checks it is still pending and still this applier's (`apply_group`), so an
applier whose claim lapsed and was taken over applies nothing of it, and one that takes over a
session waits for the row locks of a group still in flight (its claim UPDATE blocks on them).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Min, Q
from django.utils import timezone

from ..models import InboundMessage

# How long a claim lives unless renewed. An applier renews its claims between groups once a third
# of this has passed; after a crash its sessions wait at most this long (plus the follow-up's margin).
CLAIM_SECONDS = 10
# Any constant: the key of the PostgreSQL advisory lock that serialises claiming.
_CLAIM_LOCK_KEY = 0x1B0C_1A17


def new_applier_name() -> str:
    """Who is applying: host, process and a random part for this run (fits InboundMessage.applier)."""
    return f"{socket.gethostname()[:20]}:{os.getpid()}:{secrets.token_hex(3)}"[:40]


def _unclaimed(now: datetime) -> Q:
    """Never claimed, or the claim lapsed."""
    return Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)


def _claimable(now: datetime):
    """Waiting messages no live claim covers, nor any other message of their session."""
    pending = InboundMessage.objects.pending()
    held = pending.filter(claimed_until__gte=now).exclude(session_id="").values("session_id")
    return pending.filter(_unclaimed(now)).exclude(session_id__in=held)


def anything_claimable() -> bool:
    return _claimable(timezone.now()).exists()


def claim_messages(applier: str, *, batch: int) -> list[list[int]]:
    """Claim the sessions of the oldest `batch` claimable messages; their messages grouped by session.

    Each group is one session's pending messages in arrival order (a message without a session
    key is a group of its own); groups come in the order of their oldest message. Empty when
    nothing is claimable (the queue is empty, or every waiting session is someone else's).
    """
    with transaction.atomic():
        _serialise_claims()
        now = timezone.now()
        pending = InboundMessage.objects.pending()
        oldest = list(_claimable(now).order_by("id").values_list("id", "session_id")[:batch])
        if not oldest:
            return []
        keys = {key for _, key in oldest if key}
        loose = [pk for pk, key in oldest if not key]
        pending.filter(Q(session_id__in=keys) | Q(pk__in=loose)).filter(_unclaimed(now)).update(
            applier=applier, claimed_until=now + timedelta(seconds=CLAIM_SECONDS)
        )
        claimed = (
            pending.filter(Q(session_id__in=keys) | Q(pk__in=loose), applier=applier)
            .order_by("id")
            .values_list("id", "session_id")
        )
        return _groups(claimed)


def _serialise_claims() -> None:
    """Until the transaction ends, no other applier claims or renews (SQLite: its write lock does it)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CLAIM_LOCK_KEY])


def _groups(messages: Iterable[tuple[int, str]]) -> list[list[int]]:
    groups: dict[object, list[int]] = {}
    for pk, key in messages:
        groups.setdefault(key or ("message", pk), []).append(pk)
    return list(groups.values())  # dicts keep insertion order: by each group's oldest message


def renew_claims(applier: str) -> int:
    """Extend this applier's claims on its still pending messages; how many it still holds.

    Serialised with claiming: a renewal racing a takeover could otherwise keep the earlier
    messages of a session while the taker claims only the later ones.
    """
    with transaction.atomic():
        _serialise_claims()
        until = timezone.now() + timedelta(seconds=CLAIM_SECONDS)
        return InboundMessage.objects.pending().filter(applier=applier).update(claimed_until=until)


def release_claims(applier: str) -> None:
    """Give back what this applier claimed but did not apply (it stopped on an error)."""
    InboundMessage.objects.pending().filter(applier=applier).update(claimed_until=None)


def next_claim_lapse(applier: str) -> datetime | None:
    """When the first live claim of another applier on a waiting message lapses (None: there is none)."""
    now = timezone.now()
    claims = InboundMessage.objects.pending().filter(claimed_until__gte=now).exclude(applier=applier)
    return claims.aggregate(first=Min("claimed_until"))["first"]
