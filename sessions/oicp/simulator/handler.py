"""The HTTP side of the simulated HBS: one request in, one answer out, every OICP request logged.

Transport problems are refused the way nginx in front of HBS refuses them (HTML, connection
closed); OICP paths go to their operation (`remote_stop`, `cdr_pull`, `evse_pull`), /_sim/ to `control`.
Holding a connection without answering and resetting it are the network failures behaviours ask for.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from sessions.oicp import paths

from . import control
from .answers import fault_body, nginx_page, oicp_fault
from .cdr_pull import answer_get_cdrs
from .checks import parse_body
from .evse_pull import (
    answer_pull_evse_data,
    answer_pull_evse_status,
    answer_pull_evse_status_by_id,
    answer_pull_evse_status_by_operator_id,
)
from .remote_stop import answer_remote_stop
from .state import now_iso

if TYPE_CHECKING:
    from .server import SimulatorServer

MAX_BODY_BYTES = 64 * 1024
MAX_DRAIN_BYTES = 1024 * 1024  # read (and drop) an oversized body up to this, so the client sees our 413
JSON_TYPE = "application/json;charset=UTF-8"

# The OICP operations HBS serves here: path → (handler, body, the path's ProviderID) → outcome.
OICP_OPERATIONS: tuple[tuple[Any, Callable[[SimulatorHandler, str, bytes], str]], ...] = (
    (paths.pattern(paths.AUTHORIZE_REMOTE_STOP), answer_remote_stop),
    (paths.pattern(paths.GET_CHARGE_DETAIL_RECORDS), answer_get_cdrs),
    (paths.pattern(paths.PULL_EVSE_DATA), answer_pull_evse_data),
    (paths.pattern(paths.PULL_EVSE_STATUS), answer_pull_evse_status),
    (paths.pattern(paths.PULL_EVSE_STATUS_BY_ID), answer_pull_evse_status_by_id),
    (paths.pattern(paths.PULL_EVSE_STATUS_BY_OPERATOR_ID), answer_pull_evse_status_by_operator_id),
)


class SimulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive like HBS; every answer carries Content-Length
    # Headers and body leave in separate writes; on a kept-alive connection Nagle's algorithm would
    # hold the body until the client's delayed ACK (40 ms on Linux), so every reused connection
    # answered 40 ms late (measured: 44 ms against 1.1 ms on a fresh connection).
    disable_nagle_algorithm = True
    server_version = "nginx"  # what HBS's front proxy announces
    timeout = 120  # an idle keep-alive connection must not hold a thread forever
    server: SimulatorServer

    def version_string(self) -> str:
        return self.server_version

    def handle_one_request(self) -> None:
        # Per request, not per connection: keep-alive connections carry several requests.
        self._process_id = str(uuid.uuid4())
        self._entry: dict[str, Any] | None = None  # the received-log entry of an OICP request
        super().handle_one_request()

    # ---- answering

    def send_response(self, code: int, message: str | None = None) -> None:
        # Every HBS answer carries a Process-ID; a fresh one per request, also for send_error.
        super().send_response(code, message)
        self.send_header("Process-ID", self._process_id)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if self.server.log_requests:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def answer(self, status: int, body: bytes, content_type: str | None, close: bool = False) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        if self._entry is not None:
            # Log before the client can read the answer, so a test reading /_sim/received right after sees it.
            self.server.state.update(self._entry, outcome="answered", answered_status=status, answered_at=now_iso())
        self.end_headers()
        self.wfile.write(body)

    def answer_json(self, status: int, payload: Any, close: bool = False) -> None:
        self.answer(status, json.dumps(payload, separators=(",", ":")).encode("utf-8"), JSON_TYPE, close)

    def answer_html(self, status: int, detail: str | None = None, close: bool = False) -> None:
        self.answer(status, nginx_page(status, detail).encode("utf-8"), "text/html", close)

    def note(self, **changes: Any) -> None:
        """Add to this request's entry in the received log (OICP requests only)."""
        if self._entry is not None:
            self.server.state.update(self._entry, **changes)

    # ---- routing

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            if urlsplit(self.path).path.startswith(control.PREFIX):
                control.handle(self)
            else:
                self._oicp()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ---- the request body

    def content_length(self) -> int | None:
        """Declared body length; None when the header is unusable (then we answer 400 and close)."""
        raw = self.headers.get("Content-Length")
        if raw is None:
            return 0
        try:
            length = int(raw)
        except ValueError:
            return None
        return length if length >= 0 else None

    def drain(self, length: int) -> bytes:
        """Read up to MAX_DRAIN_BYTES: closing with unread data would make the kernel send RST instead of our answer."""
        return self.rfile.read(min(length, MAX_DRAIN_BYTES))

    # ---- OICP paths

    def _oicp(self) -> None:
        entry = self._entry = self.server.state.record(self._new_entry())
        try:
            outcome = self._oicp_answer()
        except OSError:  # broken pipe, reset, or a body that never arrived (socket timeout)
            outcome = "client_gone"
            self.close_connection = True
        if outcome != "answered":  # answered ones were logged by answer()
            self.server.state.update(entry, outcome=outcome)

    def _new_entry(self) -> dict[str, Any]:
        return {
            "seq": None,
            "received_at": now_iso(),
            "received_ts": time.time(),  # epoch seconds, for latency measurements
            "process_id": self._process_id,
            "method": self.command,
            "path": self.path,
            "headers": {
                "content-type": self.headers.get("Content-Type"),
                "x-correlation-id": self.headers.get("X-Correlation-ID"),
            },
            "body_text": None,
            "body": None,
            "violations": [],
            "behaviour": None,
            "matched_by": None,
            "hbs_answer": None,  # HBS answered itself: "400 ..." (session) or "310 ..." (CPO window)
            "outcome": None,
            "answered_status": None,
            "answered_at": None,
        }

    def _oicp_answer(self) -> str:
        """Refuse what nginx refuses, then hand the body to the path's operation; returns the outcome."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._reject_transport(411, "body: chunked transfer encoding is not supported, send Content-Length")
            return "answered"
        length = self.content_length()
        if length is None:
            self._reject_transport(400, f"Content-Length: {self.headers.get('Content-Length')!r} is not valid")
            return "answered"
        if length > MAX_BODY_BYTES:
            raw = self.drain(length)
            self.note(body_text=raw[:MAX_BODY_BYTES].decode("utf-8", errors="replace"))
            self._reject_transport(413, f"body: {length} bytes exceed the limit of {MAX_BODY_BYTES} bytes")
            return "answered"
        raw = self.rfile.read(length)
        path = urlsplit(self.path).path
        for path_pattern, operation in OICP_OPERATIONS:
            match = path_pattern.fullmatch(path)
            if match is None:
                continue
            if self.command != "POST":
                self.note(violations=[f"method: {self.command} is not allowed, use POST"])
                self.answer_json(
                    405, fault_body("Method not allowed", f"Request method '{self.command}' not supported")
                )
                return "answered"
            return operation(self, unquote(match["provider_id"]), raw)
        text, body, _ = parse_body(raw)
        self.note(body_text=text, body=body, violations=[f"path: {path!r} is not an OICP path the simulator serves"])
        self.answer_json(404, oicp_fault("300", "Data not found"))
        return "answered"

    def _reject_transport(self, status: int, violation: str) -> None:
        # nginx refuses these before HBS sees them, hence HTML and a closed connection.
        self.note(violations=[violation])
        self.answer_html(status, close=True)

    # ---- network failures

    def hold(self, seconds: float) -> str:
        """Wait `seconds` without answering: "elapsed", "client_gone" or "shutdown".

        Polls so a disconnecting client or a server shutdown ends the wait promptly.
        """
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "elapsed"
            if self.server.stopping.is_set():
                return "shutdown"
            if self._client_gone(min(remaining, 0.05)):
                return "client_gone"

    def _client_gone(self, wait: float) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], wait)
            if not readable:
                return False
            data = self.connection.recv(4096)  # a pipelined request or stray bytes: dropped
            return not data
        except (OSError, ValueError):
            return True

    def reset(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST, so the client sees a connection reset."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()  # the fd really closes when finish() closes rfile
