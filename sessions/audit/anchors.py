"""Signed anchors of the audit chain, kept outside the database.

An anchor says "at this time the chain's newest record was id N with hash H, and there were C
records". Written by every verification, every export and a periodic job (AUDIT_ANCHOR_DIR, one
JSON line per anchor in `anchors.jsonl`, appended, never rewritten; each one also goes to the
log). With write access to the database alone, an attacker can cut records off the end of the
chain, or wipe the table with its head row, and leave a chain that is intact in itself: the
anchors are what still knows how far it reached.

Each line is signed with the chain key (sessions/audit_keys.py): a line that is not, or that
cannot be read, is reported by the verification, never silently skipped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from .keys import canonical, sign, signature_valid

logger = logging.getLogger("sessions.audit.anchor")

FILE_NAME = "anchors.jsonl"
_SIGNED = ("at", "reason", "head_id", "head_hash", "records")


@dataclass(frozen=True)
class Anchor:
    at: str  # ISO 8601, UTC
    reason: str  # "verification", "export 12", "periodic"
    head_id: int | None
    head_hash: str
    records: int
    line: int = 0  # 1-based line number in the file (0: not read from the file)

    @property
    def moment(self) -> datetime:
        return datetime.fromisoformat(self.at)


@dataclass
class AnchorFile:
    anchors: list[Anchor] = field(default_factory=list)  # the signed lines, in file order
    bad_lines: list[int] = field(default_factory=list)  # lines unreadable or not signed by a known key

    @property
    def newest(self) -> Anchor | None:
        return self.anchors[-1] if self.anchors else None


def anchor_path() -> Path:
    return Path(settings.AUDIT_ANCHOR_DIR) / FILE_NAME


def append_anchor(*, at: datetime, reason: str, head_id: int | None, head_hash: str, records: int) -> Anchor:
    """Append one signed anchor (and log it). Raises OSError when the store cannot be written."""
    anchor = Anchor(
        at=at.isoformat(timespec="microseconds"), reason=reason, head_id=head_id, head_hash=head_hash, records=records
    )
    payload = {name: getattr(anchor, name) for name in _SIGNED}
    key_id, signature = sign(payload)
    line = canonical({**payload, "key_id": key_id, "sig": signature}) + b"\n"
    path = anchor_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_APPEND: lines from several processes never interleave (each is one short write).
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    logger.info("audit chain anchor: %s", line.decode().rstrip())
    return anchor


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        with path.open("rb") as file:
            yield from enumerate(file, start=1)
    except FileNotFoundError:
        return


def _parse(number: int, raw: bytes) -> Anchor | None:
    try:
        item: dict[str, Any] = json.loads(raw)
        payload = {name: item[name] for name in _SIGNED}
        anchor = Anchor(**payload, line=number)
        anchor.moment  # noqa: B018 - a time that does not parse makes the line unreadable
        valid = (
            isinstance(anchor.head_hash, str)
            and isinstance(anchor.records, int)
            and (anchor.head_id is None or isinstance(anchor.head_id, int))
        )
    except (ValueError, KeyError, TypeError):
        return None
    if not valid or not signature_valid(
        payload, key_id=str(item.get("key_id", "")), signature=str(item.get("sig", ""))
    ):
        return None
    return anchor


def read_anchors() -> AnchorFile:
    result = AnchorFile()
    for number, raw in _lines(anchor_path()):
        if not raw.strip():
            continue
        anchor = _parse(number, raw)
        if anchor is None:
            result.bad_lines.append(number)
        else:
            result.anchors.append(anchor)
    return result
