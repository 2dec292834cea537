"""Loopback servers for transport tests: a canned TGI that records what it receives (it also serves as an HTTP
proxy, since it answers absolute-form request lines), and a server that accepts connections and closes them.
Both run on a thread, on 127.0.0.1 only, and stop when their ``with`` block ends."""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

INFO = {
    "model_id": "loopback/tgi",
    "model_pipeline_tag": "text-generation",
    "max_concurrent_requests": 128,
    "max_best_of": 2,
    "max_stop_sequences": 4,
    "max_input_tokens": 1024,
    "max_total_tokens": 2048,
    "validation_workers": 2,
    "max_client_batch_size": 4,
    "router": "text-generation-router",
    "version": "3.3.6",
}


def token_event(index: int, text: str, final: str | None = None) -> dict:
    details = {"finish_reason": "length", "generated_tokens": index, "seed": None} if final else None
    return {
        "index": index,
        "token": {"id": index, "text": text, "logprob": -0.5, "special": False},
        "generated_text": final,
        "details": details,
    }


STREAM_EVENTS = [token_event(1, " Ray"), token_event(2, "leigh", final=" Rayleigh")]
SSE_BODY = b"".join(b"data:" + json.dumps(e).encode() + b"\n\n" for e in STREAM_EVENTS)

#: path -> (status, content type, body)
CANNED: dict[str, tuple[int, str, bytes]] = {
    "/generate": (200, "application/json", json.dumps({"generated_text": "ok"}).encode()),
    "/generate_stream": (200, "text/event-stream", SSE_BODY),
    "/info": (200, "application/json", json.dumps(INFO).encode()),
    "/health": (200, "application/json", b""),
}


@dataclass
class Seen:
    request_line: str
    headers: dict[str, str]


@dataclass
class Recorder:
    url: str
    seen: list[Seen] = field(default_factory=list)
    #: path -> (status, content type, body); a body shorter than its Content-Length is a cut answer
    answers: dict[str, tuple[int, str, bytes]] = field(default_factory=lambda: dict(CANNED))
    #: path -> Content-Length to announce instead of the body's length
    announced: dict[str, int] = field(default_factory=dict)

    @property
    def request_lines(self) -> list[str]:
        return [s.request_line for s in self.seen]


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so every call opens its own and nothing waits on keep-alive
    protocol_version = "HTTP/1.0"
    recorder: Recorder

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.recorder.seen.append(Seen(self.requestline, {k.lower(): v for k, v in self.headers.items()}))
        path = urlsplit(self.path).path  # a proxied request names the whole URL
        status, content_type, body = self.recorder.answers.get(path, (404, "text/plain", b"Not Found"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(self.recorder.announced.get(path, len(body))))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def recording_server() -> Iterator[Recorder]:
    """A canned TGI (and HTTP proxy) on a loopback port that records each request line and its headers."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    recorder = Recorder(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = type("Handler", (_Handler,), {"recorder": recorder})
    with _serving(server):
        yield recorder


class _CloseAtOnce(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        pass  # returning closes the connection before anything is read or sent


@contextlib.contextmanager
def closing_server() -> Iterator[str]:
    """A loopback server that accepts each TCP connection and closes it at once; yields its URL."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _CloseAtOnce)
    server.daemon_threads = True
    with _serving(server):
        yield f"http://127.0.0.1:{server.server_address[1]}"


@contextlib.contextmanager
def _serving(server: socketserver.TCPServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
