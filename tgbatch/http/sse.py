"""Server-sent events from a byte stream, as the WHATWG spec parses them.

One small decoder for every transport, because it reads bytes: httpx-sse needs an ``httpx.Response`` and
aiohttp's ``readline`` refuses lines over 128 KiB, which a final event with prefill details can exceed.
Handled: ``\\n``, ``\\r\\n`` and ``\\r`` line ends (also split across chunks), ``data:`` with and without a
space, ``:`` comments (keep-alives), data over several lines, ``event:`` names. An event still open when the
stream ends is dropped, as the spec says: the caller decides whether the stream ended too early.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Feed chunks, get the events they complete."""

    def __init__(self) -> None:
        self._tail = b""  # bytes after the last line end
        self._after_cr = False  # the last chunk ended in "\r": a "\n" starting the next one belongs to it
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._after_cr = False
        if b"\n" not in chunk and b"\r" not in chunk:
            self._tail += chunk
            return []
        # bytes.splitlines splits on exactly \n, \r\n and \r; a split never cuts a UTF-8 character
        lines = (self._tail + chunk).splitlines()
        self._after_cr = chunk.endswith(b"\r")
        self._tail = b"" if chunk.endswith((b"\n", b"\r")) else lines.pop()
        events = []
        for line in lines:
            event = self._line(line.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None  # a comment: TGI's keep-alive
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None  # "retry" and unknown fields are ignored

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event or "message"
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(data="\n".join(data), event=event, id=self._id)


async def aiter_sse(chunks: AsyncIterable[bytes]) -> AsyncGenerator[ServerSentEvent, None]:
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
