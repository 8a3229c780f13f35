"""A real loopback HTTP server that records webhook POSTs, for the tests.

Binds 127.0.0.1 on an OS-chosen port, serves from a daemon thread, and can be told to answer
the next N requests with an error status (or to stall) so retry behaviour is exercised against
a real socket rather than a mock.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when the body was not JSON
    raw_body: bytes
    answered_status: int


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a stalled answer closes its socket; that is expected here.
        # Anything else is still reported the standard way.
        exc = sys.exception()
        if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class WebhookReceiver:
    """Threaded ``http.server`` on 127.0.0.1:0 recording every request it gets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._failures_left = 0
        self._failure_status = 500
        self._stalls_left = 0
        self._stall_s = 0.0  # float-ok: seconds
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                status, stall_s = receiver._next_answer()
                try:
                    parsed: Any = json.loads(raw)
                except ValueError:
                    parsed = None
                # Recorded on arrival: a stalled request has reached us even if the client
                # gives up waiting for the answer.
                receiver._record(
                    ReceivedRequest(self.path, dict(self.headers.items()), parsed, raw, status)
                )
                if stall_s:
                    time.sleep(stall_s)
                payload = b'{"ok": true}' if status < 400 else b'{"error": "injected"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                # Stay quiet: request lines contain the (secret) path.
                return

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # quick shutdown() in test teardown
            name="webhook-receiver",
            daemon=True,
        )

    # -- control -----------------------------------------------------------------------------
    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next ``count`` requests with ``status`` (they are still recorded)."""
        with self._lock:
            self._failures_left = count
            self._failure_status = status

    def stall_next(self, count: int, seconds: float) -> None:  # float-ok: seconds
        """Sleep ``seconds`` before answering each of the next ``count`` requests."""
        with self._lock:
            self._stalls_left = count
            self._stall_s = seconds

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def delivered(self) -> list[ReceivedRequest]:
        """Requests that were answered with a success status."""
        return [r for r in self.requests if r.answered_status < 400]

    # -- handler helpers ---------------------------------------------------------------------
    def _next_answer(self) -> tuple[int, float]:  # float-ok: seconds
        with self._lock:
            stall_s = 0.0  # float-ok: seconds
            if self._stalls_left > 0:
                self._stalls_left -= 1
                stall_s = self._stall_s
            if self._failures_left > 0:
                self._failures_left -= 1
                return self._failure_status, stall_s
            return 200, stall_s

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)


@contextmanager
def running_webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
