"""The audit chain's keys: which key signs new records, which older keys still verify, signatures.

The chain is keyed (HMAC-SHA-256) so that write access to the database is not enough to rewrite
it: re-hashing records, forging appended records or a purge checkpoint all need a key that lives
only in the portal's environment (`AUDIT_CHAIN_KEY`), never in the database. Each record names
the id of the key that chained it (`AuditRecord.key_id`), so the key can be rotated: a new
`AUDIT_CHAIN_KEY`/`AUDIT_CHAIN_KEY_ID` signs from then on, and the old key moves to
`AUDIT_CHAIN_RETIRED_KEYS` to keep verifying the records it signed.

Signatures of anchors and checkpoints use the same key with their own prefix, so a signature can
never be presented as a record's hash (a record's input starts with 64 hex digits or "{").
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings

from ..canonical import canonical_json

_SIGNATURE_PREFIX = b"emp-portal audit signature\x00"


def _encoded(key: str) -> bytes:
    return key.encode()


def current_key() -> tuple[str, bytes]:
    """(key id, key) that chains and signs from now on."""
    return settings.AUDIT_CHAIN_KEY_ID, _encoded(settings.AUDIT_CHAIN_KEY)


def all_keys() -> dict[str, bytes]:
    """Every key a record or signature may name: the retired ones and the current one."""
    keys = {key_id: _encoded(key) for key_id, key in settings.AUDIT_CHAIN_RETIRED_KEYS.items()}
    key_id, key = current_key()
    keys[key_id] = key
    return keys


def canonical(payload: dict[str, Any]) -> bytes:
    return canonical_json(payload).encode()


def sign(payload: dict[str, Any]) -> tuple[str, str]:
    """(key id, signature) of a payload (an anchor, a purge checkpoint)."""
    key_id, key = current_key()
    return key_id, hmac.new(key, _SIGNATURE_PREFIX + canonical(payload), hashlib.sha256).hexdigest()


def signature_valid(payload: dict[str, Any], *, key_id: str, signature: str) -> bool:
    key = all_keys().get(key_id)
    if key is None or not signature:
        return False
    expected = hmac.new(key, _SIGNATURE_PREFIX + canonical(payload), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
