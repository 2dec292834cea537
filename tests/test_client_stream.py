"""Token streaming: SSE framing as TGI sends it (both axum versions), keep-alives, in-stream errors, cut streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest

from tgbatch import errors
from tgbatch.client import AsyncClient, Client, FinishReason, StreamResponse

SSE = {"content-type": "text/event-stream", "cache-control": "no-cache"}


def token_event(index: int, text: str, *, final: str | None = None, details: dict[str, Any] | None = None) -> dict:
    return {
        "index": index,
        "token": {"id": 100 + index, "text": text, "logprob": -0.5, "special": False},
        "generated_text": final,
        "details": details,
    }


FINAL_DETAILS = {"finish_reason": "length", "generated_tokens": 3, "seed": 18435558523380366744, "input_length": 4}
EVENTS = [
    token_event(1, " Ray"),
    token_event(2, "leigh"),
    token_event(3, " scattering", final=" Rayleigh scattering", details=FINAL_DETAILS),
]


def frame(events: list[Any], *, space: bool = True, keepalive: bool = False) -> bytes:
    out = []
    for event in events:
        if keepalive:
            out.append(":\n\n")
        data = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
        out.append(f"data:{' ' if space else ''}{data}\n\n")
    return "".join(out).encode()


class _Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body delivered in small chunks (events split across reads), optionally failing at the end."""

    def __init__(self, body: bytes, *, fail: Exception | None = None, size: int = 7) -> None:
        self.body, self.fail, self.size = body, fail, size

    def _parts(self) -> list[bytes]:
        return [self.body[i : i + self.size] for i in range(0, len(self.body), self.size)]

    def __iter__(self) -> Iterator[bytes]:
        yield from self._parts()
        if self.fail:
            raise self.fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self._parts():
            yield part
        if self.fail:
            raise self.fail


def _handler(body: bytes, *, status: int = 200, headers: dict[str, str] | None = None, fail: Exception | None = None):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, headers=headers or SSE, stream=_Chunks(body, fail=fail))

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def sync_stream(handler, **kwargs: Any) -> list[StreamResponse]:
    client = Client("http://tgi", http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    return list(client.generate_stream("Why is the sky blue?", **kwargs))


def async_stream(handler, **kwargs: Any) -> list[StreamResponse]:
    async def main() -> list[StreamResponse]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        client = AsyncClient("http://tgi", http_client=http)
        return [event async for event in client.generate_stream("Why is the sky blue?", **kwargs)]

    return anyio.run(main)


both = pytest.mark.parametrize("stream", [sync_stream, async_stream], ids=["sync", "async"])


@both
@pytest.mark.parametrize("space", [True, False], ids=["axum07", "axum06"])
@pytest.mark.parametrize("keepalive", [False, True], ids=["plain", "keepalive"])
def test_stream_parses_both_data_forms_and_keepalives(stream, space, keepalive) -> None:
    handler = _handler(frame(EVENTS, space=space, keepalive=keepalive))
    events = stream(handler)
    assert [e.index for e in events] == [1, 2, 3]
    assert "".join(e.token.text for e in events) == " Rayleigh scattering"
    assert events[0].generated_text is None and events[0].details is None
    last = events[-1]
    assert last.generated_text == " Rayleigh scattering"
    assert last.details is not None
    assert last.details.finish_reason is FinishReason.Length
    assert last.details.seed == 18435558523380366744
    assert last.details.input_length == 4
    request = handler.seen[0]
    assert request.url.path == "/generate_stream"
    assert request.headers["accept"] == "text/event-stream"


@both
def test_events_without_index_and_with_top_tokens(stream) -> None:
    old = [dict(e) for e in EVENTS]
    for e in old:
        del e["index"]
    old[0]["top_tokens"] = [{"id": 1, "text": "a", "logprob": -0.1, "special": False}]
    events = stream(_handler(frame(old)))
    assert [e.index for e in events] == [None, None, None]
    assert events[0].top_tokens is not None and events[0].top_tokens[0].text == "a"


@both
@pytest.mark.parametrize(
    ("error_type", "cls"),
    [
        ("generation", errors.GenerationError),
        ("overloaded", errors.OverloadedError),
        ("validation", errors.ValidationError),
        ("incomplete_generation_stream", errors.IncompleteGenerationError),
        ("stream_serialization_error", errors.UnknownError),
    ],
)
def test_error_event_after_tokens_raises_mapped_error(stream, error_type, cls) -> None:
    body = frame([*EVENTS[:2], {"error": f"something: {error_type}", "error_type": error_type}])
    received: list[StreamResponse] = []

    def consume() -> None:
        # tokens before the error reach the caller, then the error is raised
        if stream is sync_stream:
            client = Client("http://tgi", http_client=httpx.Client(transport=httpx.MockTransport(_handler(body))))
            for event in client.generate_stream("x"):
                received.append(event)
        else:

            async def main() -> None:
                http = httpx.AsyncClient(transport=httpx.MockTransport(_handler(body)))
                async for event in AsyncClient("http://tgi", http_client=http).generate_stream("x"):
                    received.append(event)

            anyio.run(main)

    with pytest.raises(cls) as info:
        consume()
    assert len(received) == 2
    assert info.value.message == f"something: {error_type}"
    assert info.value.error_type == error_type
    assert info.value.retryable is cls.retryable or cls is errors.UnknownError


@both
def test_validation_error_event_as_first_event(stream) -> None:
    message = "Input validation error: `inputs` cannot be empty"
    with pytest.raises(errors.ValidationError) as info:
        stream(_handler(frame([{"error": message, "error_type": "validation"}])))
    assert str(info.value) == message and info.value.status_code == 422


@both
def test_stream_ending_before_final_event_is_incomplete(stream) -> None:
    with pytest.raises(errors.IncompleteStreamError) as info:
        stream(_handler(frame(EVENTS[:2])))
    assert info.value.retryable


@both
def test_final_event_cut_mid_frame_is_incomplete(stream) -> None:
    body = frame(EVENTS)
    with pytest.raises(errors.IncompleteStreamError):
        stream(_handler(body[: len(body) - 40]))


@both
def test_connection_dropped_mid_stream_is_incomplete(stream) -> None:
    dropped = httpx.RemoteProtocolError("peer closed connection without sending complete message body")
    with pytest.raises(errors.IncompleteStreamError) as info:
        stream(_handler(frame(EVENTS[:1]), fail=dropped))
    assert info.value.__cause__ is dropped


@both
def test_read_timeout_mid_stream_is_a_timeout(stream) -> None:
    with pytest.raises(errors.RequestTimeoutError):
        stream(_handler(frame(EVENTS[:1]), fail=httpx.ReadTimeout("read timed out")))


@both
def test_done_sentinel_after_final_event_is_ignored(stream) -> None:
    assert len(stream(_handler(frame([*EVENTS, "[DONE]"])))) == 3


@both
def test_non_200_before_stream_maps_like_generate(stream) -> None:
    body = json.dumps({"error": "Model is overloaded", "error_type": "overloaded"}).encode()
    with pytest.raises(errors.OverloadedError):
        stream(_handler(body, status=429, headers={"content-type": "application/json"}))
    with pytest.raises(errors.AuthenticationError):
        stream(_handler(b"", status=401, headers={"content-type": "text/plain"}))


@both
def test_json_instead_of_event_stream_is_a_protocol_error(stream) -> None:
    body = json.dumps([{"generated_text": "x"}]).encode()
    with pytest.raises(errors.ProtocolError, match="application/json"):
        stream(_handler(body, headers={"content-type": "application/json"}))


@both
def test_compat_route_streams_with_stream_flag(stream) -> None:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        assert request.url.path == "/"
        return httpx.Response(200, headers=SSE, content=frame(EVENTS))

    if stream is sync_stream:
        client = Client("http://tgi", http_client=httpx.Client(transport=httpx.MockTransport(handler)), compat=True)
        events = list(client.generate_stream("x"))
    else:

        async def main() -> list[StreamResponse]:
            http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
            client = AsyncClient("http://tgi", http_client=http, compat=True)
            return [e async for e in client.generate_stream("x")]

        events = anyio.run(main)
    assert len(events) == 3
    assert seen[0]["stream"] is True


def test_stream_request_body() -> None:
    handler = _handler(frame(EVENTS))
    sync_stream(handler, max_new_tokens=3, top_n_tokens=2)
    body = json.loads(handler.seen[0].content)
    assert body["inputs"] == "Why is the sky blue?"
    assert body["parameters"]["max_new_tokens"] == 3
    assert body["parameters"]["top_n_tokens"] == 2
    assert body["parameters"]["details"] is True
    assert "stream" not in body  # /generate_stream needs no flag
