"""Server-sent events as axum sends them: ``data: <json>\\n\\n`` frames, a ``:\\n\\n`` comment after
``keepalive_s`` without an event, and a plain end of body after the last event (no ``[DONE]``).

The response is a raw ASGI callable so that a simulated drop can cut the body mid-way (raise after some
frames) and so that an un-paced stream goes out in one write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

KEEP_ALIVE = b":\n\n"


class SSEResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[bytes],
        headers: dict[str, str],
        *,
        keepalive_s: float,
        paced: bool,
    ) -> None:
        self.status_code = 200
        self._events = events
        self._keepalive_s = keepalive_s
        #: False when the events come without waiting (no latency, no stall): no timer needed
        self._paced = paced
        self.background = None
        self.raw_headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")] + [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        try:
            if self._paced:
                await self._send_paced(receive, send)
            else:
                await self._send_at_once(send)
        finally:
            await _aclose(self._events)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_at_once(self, send: Send) -> None:
        chunks: list[bytes] = []
        try:
            async for chunk in self._events:
                chunks.append(chunk)
        finally:
            # on a simulated drop the frames produced so far still go out before the connection is cut
            if chunks:
                await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})

    async def _send_paced(self, receive: Receive, send: Send) -> None:
        # uvicorn ignores sends to a closed connection, so a client that went away is noticed through receive():
        # the stream then stops and its generation gives back its semaphore permit, as TGI's does
        disconnected = asyncio.ensure_future(_until_disconnect(receive))
        pending: asyncio.Future[Any] | None = None
        try:
            while True:
                pending = asyncio.ensure_future(anext(self._events))
                while True:
                    done, _ = await asyncio.wait(
                        {pending, disconnected}, timeout=self._keepalive_s, return_when=asyncio.FIRST_COMPLETED
                    )
                    if pending in done:
                        break
                    if disconnected in done:
                        return
                    # no event for keepalive_s: axum's KeepAlive sends a comment frame
                    await send({"type": "http.response.body", "body": KEEP_ALIVE, "more_body": True})
                try:
                    chunk = pending.result()
                except StopAsyncIteration:
                    return
                finally:
                    pending = None
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            disconnected.cancel()
            if pending is not None:
                pending.cancel()
                # let the generator run its cleanup (permit release) before it is closed
                await asyncio.wait({pending})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _aclose(events: AsyncIterator[bytes]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        # RuntimeError: the generator is still in a cancelled step; it is being torn down anyway
        with contextlib.suppress(RuntimeError):
            await aclose()
