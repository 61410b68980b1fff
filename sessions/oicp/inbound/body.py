"""A pushed body checked before it is parsed: UTF-8 JSON, one object, not too deep, no NaN or repeated keys."""

# The nesting is counted by a linear scan before `json.loads` (`fields.MAX_DEPTH`), so 100,000 nested
# lists cost a few microseconds and never reach the parser's recursion.

from __future__ import annotations

from typing import Any

from ..fields import DuplicateKey, FieldError, json_type, load_json
from .refusal import InboundError


def decode_body(body: bytes | str) -> tuple[str, dict[str, Any]]:
    """The body as text and as a JSON object; InboundError when it is neither."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InboundError([f"body: not UTF-8 (byte 0x{body[exc.start]:02x} at position {exc.start})"]) from None
    else:
        text = body
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise InboundError(["body: empty; a JSON object is expected"])
    try:
        data = load_json(text)
    except DuplicateKey as exc:
        raise InboundError([str(exc)]) from None
    except FieldError as exc:
        raise InboundError([f"body: {exc}"]) from None
    if not isinstance(data, dict):
        raise InboundError([f"body: must be a JSON object, not {json_type(data)}"])
    return text, data
