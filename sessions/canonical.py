"""The canonical JSON of the audit trail: sorted keys, no spaces, UTF-8 text.

One definition for everything that must produce the same bytes: a record's hashed content
(sessions/audit/chain.py), its stored `data` (sessions/models/json_field.py), and the signed
anchors and purge checkpoints (sessions/audit/keys.py).
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
