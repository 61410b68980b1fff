"""Pushes to the portal's inbound endpoints (notifications, CDRs), as HBS forwards them, and their log.

Retried on transport errors, 5xx, 408 and 429, then dropped and logged: a portal that is down never
stops the simulator. Each push runs on the calling background thread (see `scheduler`).
"""

from __future__ import annotations

import collections
import copy
import json
import sys
import threading
import urllib.error
import urllib.request
from typing import Any

from .config import CpoConfig
from .state import now_iso

MAX_PUSHED = 10_000


def http_post_json(url: str, body: Any, timeout: float) -> tuple[int | None, str, str | None]:
    """POST JSON with urllib: (HTTP status or None, answer text, error or None). Never raises."""
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=UTF-8",
            "Accept": "application/json",
            "User-Agent": "hubject-simulator",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the portal's URL
            return response.status, response.read(64 * 1024).decode("utf-8", errors="replace"), None
    except urllib.error.HTTPError as exc:
        try:
            text = exc.read(64 * 1024).decode("utf-8", errors="replace")
        except Exception:  # noqa: BLE001
            text = ""
        return exc.code, text, None
    except Exception as exc:  # noqa: BLE001 - connection refused, timeout, bad URL: logged, never fatal
        return None, "", f"{type(exc).__name__}: {exc}"


class Pusher:
    """Sends to `config.portal_url` and keeps what was pushed, for GET /_sim/pushed."""

    def __init__(self, config: CpoConfig, stopping: threading.Event) -> None:
        self.config = config
        self.stopping = stopping
        self.lock = threading.Lock()
        self.pushed: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_PUSHED)
        self._seq = 0

    def push(self, kind: str, session_id: str, path: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """POST to the portal, retrying transport failures and 5xx; the log entry says how it went."""
        config = self.config
        url = config.portal_url + path
        status, text, error, attempts = None, "", None, 0
        for attempts in range(1, config.push_attempts + 1):
            status, text, error = http_post_json(url, body, config.push_timeout_seconds)
            if status is not None and status < 500 and status not in (408, 429):
                break
            if attempts < config.push_attempts and self.stopping.wait(
                config.push_backoff_seconds * 2 ** (attempts - 1)
            ):
                break
        acknowledged = None
        try:
            answer = json.loads(text) if text else None
            if isinstance(answer, dict) and isinstance(answer.get("Result"), bool):
                acknowledged = answer["Result"] and status == 200
        except ValueError:
            pass
        entry = {
            "seq": None,
            "kind": kind,
            "session_id": session_id,
            "url": url,
            "body": body,
            "status": status,
            "response": text[:2000],
            "acknowledged": acknowledged,
            "error": error,
            "attempts": attempts,
            "at": now_iso(),
            **extra,
        }
        with self.lock:
            self._seq += 1
            entry["seq"] = self._seq
            self.pushed.append(entry)
        if status is None or status >= 300:
            sys.stderr.write(
                f"simulator: push {kind} {session_id} to {url} failed after {attempts} attempt(s): "
                f"{error or f'HTTP {status}'}\n"
            )
        return entry

    def pushed_list(self, session_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                copy.deepcopy(e)
                for e in self.pushed
                if (session_id is None or e["session_id"].lower() == session_id.lower())
                and (kind is None or e["kind"].lower() == kind.lower())
            ]

    def clear_pushed(self) -> int:
        with self.lock:
            count = len(self.pushed)
            self.pushed.clear()
            return count
