"""An in-process OpenAI-style server for tests: canned answers by path (``httpx.MockTransport``), every request
recorded with its decoded body; and the recorded answers of real servers under ``tests/data/openai``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

DATA = Path(__file__).parent / "data" / "openai"


def sse(events: list[Any], *, done: bool = True) -> bytes:
    """An SSE body of JSON events, ``data: [DONE]`` last unless ``done=False``."""
    lines = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
    if done:
        lines.append(b"data: [DONE]\n\n")
    return b"".join(lines)


def recorded(name: str) -> dict[str, Any]:
    """One recorded router answer (from huggingface_hub's cassettes): url, status, content_type, body."""
    return json.loads((DATA / "router" / f"{name}.json").read_text())


def tgi_snapshot(name: str) -> Any:
    return json.loads((DATA / "tgi" / f"{name}.json").read_text())


@dataclass
class Answer:
    status: int = 200
    body: bytes | str | Any = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> httpx.Response:
        body = self.body
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        content = body.encode() if isinstance(body, str) else body
        return httpx.Response(self.status, content=content, headers={"content-type": self.content_type, **self.headers})


@dataclass
class Seen:
    method: str
    url: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class MockServer:
    """Answers by URL path; unknown paths get 404. ``seen`` holds every request, its JSON body decoded."""

    answers: dict[str, Answer] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        raw = request.read()
        body = json.loads(raw) if raw else None
        self.seen.append(Seen(request.method, str(request.url), request.url.path, dict(request.headers), body))
        answer = self.answers.get(request.url.path, Answer(404, "Not Found", "text/plain"))
        return answer.response()

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))

    def sync_client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))

    @property
    def bodies(self) -> list[Any]:
        return [s.body for s in self.seen if s.method == "POST"]
