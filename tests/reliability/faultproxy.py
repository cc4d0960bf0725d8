"""A tiny fault-injecting HTTP reverse proxy for S3 tests (stdlib only).

It sits on 127.0.0.1 in front of the moto server and forwards every request unchanged, except
that it can be told to fail the next N requests matching a predicate::

    proxy = FaultProxy(moto_server.endpoint).start()
    proxy.inject("slowdown", times=2, method="PUT", path_contains="/models/")
    ...  # a client pointed at proxy.endpoint sees two 503 SlowDown, then the real answer
    proxy.stop()

Fault kinds:

``slowdown``
    ``503`` with S3's ``SlowDown`` error XML (throttling; botocore backs off with a 1 s base).
``internal``
    ``500`` with S3's ``InternalError`` error XML (transient; 50 ms base backoff).
``reset``
    the request is read, then the TCP connection is reset (``SO_LINGER`` 0) without any answer.
``lost_response``
    the request IS forwarded to the server (it takes effect), then the connection is reset: the
    client never learns that its write succeeded (a timeout/reset after the commit point).

Every request is recorded in :attr:`FaultProxy.log` as ``(method, path, outcome)`` where outcome is
the HTTP status forwarded or the name of the injected fault.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULT_KINDS = ("slowdown", "internal", "reset", "lost_response")

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade"}


def _error_xml(code: str, message: str, resource: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><Resource>{resource}</Resource>"
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    ).encode()


@dataclass
class Fault:
    kind: str
    times: int
    method: str | None = None
    path_contains: str | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.hits >= self.times:
            return False
        if self.method and method.upper() != self.method.upper():
            return False
        return not (self.path_contains and self.path_contains not in path)


@dataclass
class _State:
    upstream: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.matches(method, path):
                    f.hits += 1
                    return f
        return None

    def record(self, method: str, path: str, outcome: str) -> None:
        with self.lock:
            self.log.append((method, path, outcome))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - silence stderr access log
        pass

    # every verb goes through one function
    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_HEAD = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _reset(self) -> None:
        # SO_LINGER (on, 0 s): close() sends a TCP RST instead of a FIN
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        has_length = False
        for k, v in headers:
            lk = k.lower()
            if lk in _HOP_BY_HOP or lk == "date" or lk == "server":
                continue
            if lk == "content-length":
                has_length = True
            self.send_header(k, v)
        if not has_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        host, port = self.server.state.upstream
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() in _HOP_BY_HOP or k.lower() == "content-length":
                    continue
                conn.putheader(k, v)
            if body or self.command in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, list(resp.getheaders()), data
        finally:
            conn.close()

    def _handle(self) -> None:
        state = self.server.state
        method, path = self.command, self.path
        body = self._read_body()
        fault = state.take_fault(method, path)
        resource = urlsplit(path).path
        if fault is None or fault.kind == "lost_response":
            try:
                status, headers, data = self._forward(body)
            except OSError as e:
                state.record(method, path, f"upstream-error:{e}")
                self._send(502, [("Content-Type", "text/plain")], b"bad gateway")
                return
            if fault is not None:
                state.record(method, path, "lost_response")
                self._reset()
                return
            state.record(method, path, str(status))
            self._send(status, headers, data)
            return
        state.record(method, path, fault.kind)
        if fault.kind == "reset":
            self._reset()
        elif fault.kind == "slowdown":
            self._send(503, [("Content-Type", "application/xml")],
                       _error_xml("SlowDown", "Please reduce your request rate.", resource))
        elif fault.kind == "internal":
            self._send(500, [("Content-Type", "application/xml")],
                       _error_xml("InternalError", "We encountered an internal error. Please try again.",
                                  resource))
        else:  # pragma: no cover - guarded by inject()
            raise AssertionError(fault.kind)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001 - quiet on resets
        pass


class FaultProxy:
    """Reverse proxy on ``127.0.0.1:<free port>`` forwarding to ``upstream`` (``http://host:port``)."""

    def __init__(self, upstream: str) -> None:
        u = urlsplit(upstream)
        self._state = _State(upstream=(u.hostname or "127.0.0.1", u.port or 80))
        self._server = _Server(self._state)
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def log(self) -> list[tuple[str, str, str]]:
        with self._state.lock:
            return list(self._state.log)

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def inject(self, kind: str, times: int = 1, *, method: str | None = None,
               path_contains: str | None = None) -> Fault:
        """Fail the next ``times`` requests matching ``method``/``path_contains`` with ``kind``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {kind!r}")
        fault = Fault(kind, times, method, path_contains)
        with self._state.lock:
            self._state.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._state.lock:
            self._state.faults.clear()
            self._state.log.clear()

    def requests_for(self, path_contains: str, method: str | None = None) -> list[tuple[str, str, str]]:
        return [r for r in self.log if path_contains in r[1] and (method is None or r[0] == method.upper())]

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
