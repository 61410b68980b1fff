"""The audit trail's hash chain: canonical bytes of a record, its hash, and the walk that checks it.

No ORM and no settings here (keys are passed in, see `sessions.audit_keys`), so the migrations,
the audit service, the verification and the tests all hash exactly the same way.

    record_hash = HMAC-SHA-256(key named by key_id, prev_hash (64 hex chars, "" for the first
                               record) + canonical_bytes)

Keyed, so that rewriting the chain needs the key, which is not in the database. (Before
migration 0016 the chain was plain SHA-256; that migration re-chained every record with the key.)

canonical_bytes is compact JSON (sorted keys, no spaces, UTF-8) of the record's content:
event_type, occurred_at (ISO 8601 in UTC with microseconds), actor_id, charging_session_id,
stop_request_id, correlation_id (canonical UUID text or null) and data. The record's id is not
part of it (it is assigned on insert); the order of the chain is the order of the ids.

The audit record stores `data` as exactly the text it has inside canonical_bytes
(`sessions.models.json_field.CanonicalJSONField`), so `sessions.services.audit_verify` can put the canonical
bytes together from the stored values without parsing them; `row_hash` here stays the exact
reference (and the only way for records stored before that, whose text is not canonical).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..canonical import canonical_json

# The order of the columns a verification reads (values_list order).
CHAIN_FIELDS = (
    "id",
    "event_type",
    "occurred_at",
    "actor_id",
    "charging_session_id",
    "stop_request_id",
    "correlation_id",
    "data",
    "prev_hash",
    "record_hash",
    "key_id",
)


def normalise_data(data: dict[str, Any] | None) -> dict[str, Any]:
    """The data as it will read back from the JSON column (tuples become lists, keys strings)."""
    return json.loads(json.dumps(data or {}))


def _utc_iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_bytes(*, occurred_at: datetime, **fields: Any) -> bytes:
    """The record's canonical bytes; `fields`: event_type, actor_id, charging_session_id,
    stop_request_id, correlation_id and data (all of them, by name: `_canonical` checks)."""
    return _canonical(_utc_iso(occurred_at), **fields)


def _canonical(
    occurred_at: str,
    *,
    event_type: str,
    actor_id: int | None,
    charging_session_id: int | None,
    stop_request_id: int | None,
    correlation_id: uuid.UUID | str | None,
    data: dict[str, Any],
) -> bytes:
    content = {
        "actor_id": actor_id,
        "charging_session_id": charging_session_id,
        "correlation_id": str(uuid.UUID(str(correlation_id))) if correlation_id else None,
        "data": data,
        "event_type": event_type,
        "occurred_at": occurred_at,
        "stop_request_id": stop_request_id,
    }
    return canonical_json(content).encode()


# Stands for occurred_at while a record's content is put together before its time is known.
_TIME_SLOT = "\x00occurred_at\x00"
_TIME_SLOT_JSON = canonical_json(_TIME_SLOT).encode()


def canonical_parts(**fields: Any) -> tuple[bytes, bytes]:
    """canonical_bytes without its time: (before, after) such that canonical_bytes(occurred_at=t)
    is before + time_bytes(t) + after. An append builds these before it locks the chain, where
    only the time and the hashes are left to do (`records.record_audits`).

    The slot is found from the right: occurred_at sorts after every key whose value could hold the
    same text (data, event_type), and only stop_request_id (a number or null) comes after it.
    """
    text = _canonical(_TIME_SLOT, **fields)
    at = text.rindex(_TIME_SLOT_JSON)
    return text[: at + 1], text[at + len(_TIME_SLOT_JSON) - 1 :]


def time_bytes(occurred_at: datetime) -> bytes:
    """occurred_at as it reads inside canonical_bytes (without its quotes)."""
    return _utc_iso(occurred_at).encode()


def chain_hash(prev_hash: str, content: bytes, key: bytes) -> str:
    return hmac.new(key, prev_hash.encode("ascii") + content, hashlib.sha256).hexdigest()


def unkeyed_chain_hash(prev_hash: str, content: bytes) -> str:
    """The chain before migration 0016 (plain SHA-256): only the migrations that predate it use it."""
    return hashlib.sha256(prev_hash.encode("ascii") + content).hexdigest()


def row_content(row: tuple) -> bytes:
    """The canonical bytes of a row read in CHAIN_FIELDS order (its data as JSON text or a dict)."""
    _id, event_type, occurred_at, actor_id, session_id, stop_id, correlation_id, data, *_ = row
    return canonical_bytes(
        event_type=event_type,
        occurred_at=occurred_at,
        actor_id=actor_id,
        charging_session_id=session_id,
        stop_request_id=stop_id,
        correlation_id=correlation_id,
        data=data if isinstance(data, dict) else json.loads(data or "{}"),
    )


def row_hash(row: tuple, keys: Mapping[str, bytes]) -> str | None:
    """The hash a row read in CHAIN_FIELDS order should carry, given its own prev_hash and key id;
    None when the portal does not have the key the row names."""
    *_, prev_hash, _record_hash, key_id = row
    key = keys.get(key_id or "")
    if key is None:
        return None
    return chain_hash(prev_hash or "", row_content(row), key)


def content_matches(row: tuple, keys: Mapping[str, bytes]) -> bool:
    """Whether a row (CHAIN_FIELDS order) carries the hash of its own content and prev_hash.

    A value the hash cannot be computed from (data that is not JSON, a malformed UUID, a missing
    time: possible only behind the portal's back) does not match.
    """
    try:
        return bool(row[9]) and row_hash(row, keys) == row[9]
    except (ValueError, TypeError, AttributeError):
        return False


@dataclass
class ChainWalk:
    """The outcome of walking part of the chain."""

    ok: bool = True
    checked: int = 0
    last_id: int | None = None
    last_hash: str = ""
    broken_id: int | None = None
    detail: str = ""
    # The hash before the last good record (its prev_hash): a record linking to it skips that record.
    before_last: str | None = None


def walk_chain(
    rows: Iterable[tuple],
    *,
    keys: Mapping[str, bytes],
    start_hash: str,
    start_after_id: int | None = None,
    walk: ChainWalk | None = None,
    content_ok: Callable[[tuple], bool] | None = None,
) -> ChainWalk:
    """Check rows (CHAIN_FIELDS order, ascending id) against the chain; stop at the first break.

    Each record must carry the hash of the record before it (prev_hash) and a record_hash that
    matches its own content. When a record fails, the next one tells what happened to it: when
    the next record links to the hash *before* the failing one, the failing record was inserted
    (the chain runs past it); otherwise a content mismatch means it was edited, and a link
    mismatch means a record before it is missing (deleted) or was re-hashed.

    `walk` continues an earlier walk (its state included); `content_ok(row)` checks a row's
    record_hash against its content (a caller may know that already from a faster check).
    """
    if content_ok is None:

        def content_ok(row: tuple) -> bool:
            return content_matches(row, keys)

    walk = walk or ChainWalk(last_id=start_after_id, last_hash=start_hash)
    expected = walk.last_hash
    before_last = walk.before_last
    iterator: Iterator[tuple] = iter(rows)
    for row in iterator:
        record_id, prev_hash, record_hash = row[0], row[8] or "", row[9] or ""
        content_good = bool(record_hash) and content_ok(row)
        link_ok = prev_hash == expected
        if content_good and link_ok:
            walk.checked += 1
            walk.before_last = before_last = expected
            walk.last_id, walk.last_hash, expected = record_id, record_hash, record_hash
            continue
        walk.ok, walk.broken_id = False, record_id
        if content_good and before_last is not None and prev_hash == before_last:
            # A well-forged record sits between two genuine ones: the genuine one links past it.
            walk.broken_id, walk.checked = walk.last_id, walk.checked - 1
            walk.detail = (
                f"inserted: record {walk.last_id} is not part of the chain; the record after it "
                f"({record_id}) links to the record before it"
            )
            return walk
        following = next(iterator, None)
        previous = f"id {walk.last_id}" if walk.last_id is not None else "the start of the chain"
        if following is not None and (following[8] or "") == expected:
            walk.detail = (
                f"inserted: record {record_id} is not part of the chain; the record after it "
                f"({following[0]}) links straight to {previous}"
            )
        elif not record_hash:
            walk.detail = f"inserted: record {record_id} has no hash (not written by the audit service)"
        elif (row[10] or "") not in keys:
            walk.detail = (
                f"unknown key: record {record_id} names chain key {row[10]!r}, which this portal "
                "does not have (AUDIT_CHAIN_KEY_ID, AUDIT_CHAIN_RETIRED_KEYS)"
            )
        elif not content_good:
            walk.detail = f"edited: the content of record {record_id} no longer matches its hash"
        else:
            walk.detail = (
                f"deleted: record {record_id} links to a record that is missing; one or more records "
                f"between {previous} and {record_id} were deleted (or re-hashed)"
            )
        return walk
    return walk
