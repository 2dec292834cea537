"""The default transport: one aiohttp session per client, for POST, SSE streaming and GET alike.

Why aiohttp alone: on a 2-core machine at 64 concurrent requests a request costs about 2.9 ms of client CPU
through stock ``httpx.AsyncClient`` (connection-pool contention, encode/httpx#3215), 0.57 ms through httpx over
an aiohttp transport, and 0.20 ms through aiohttp alone. Why one session for every call: two stacks disagreed on
errors, proxies, TLS trust, cookies and pool limits. Everything is set once, when the session is made: the
proxy (read from the environment once, see ``proxy.py``), TLS (aiohttp's default context: the system's trust
store, ``SSL_CERT_FILE`` honoured), one cookie jar, the pool limit and the timeouts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import aiohttp

from tgbatch.http.base import DEFAULT_LIMITS, DEFAULT_TIMEOUT, PoolLimits, RawResponse, Timeout
from tgbatch.http.errors import AIOHTTP_ERRORS, translate
from tgbatch.http.proxy import env_proxy


def client_timeout(timeout: Timeout) -> aiohttp.ClientTimeout:
    # no total: a generation may take minutes; a stalled one is caught by the read timeout. aiohttp has no
    # write timeout, and its `connect` (pool wait + connecting) stays open like the pool timeout.
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=timeout.connect, sock_read=timeout.read)


class AiohttpTransport:
    """``Transport`` over one ``aiohttp.ClientSession``, made on first use: a session belongs to the event loop
    it was made on, and a client may be built outside any loop."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        cookies: Mapping[str, str] | None = None,
        limits: PoolLimits = DEFAULT_LIMITS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.limits = limits
        self.proxy = env_proxy(self.base_url)
        self._client_timeout = client_timeout(timeout)
        self._cookies = dict(cookies) if cookies else None
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0, keepalive_timeout=self.limits.keepalive_expiry
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._client_timeout,
            trust_env=False,  # the proxy is read once, in __init__; trust_env would re-read it for every request
            # unsafe: cookies are sent to (and kept from) IP-address hosts too, as httpx and browsers do
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            cookies=self._cookies,
        )
        return self._session

    def _send(
        self, method: str, path: str, content: bytes | None, headers: Mapping[str, str], timeout: Timeout | None
    ) -> aiohttp.client._RequestContextManager:
        session = self._session or self._open()
        return session.request(
            method,
            self.base_url + path,
            data=content,
            headers=headers,
            allow_redirects=False,
            proxy=self.proxy,
            timeout=self._client_timeout if timeout is None else client_timeout(timeout),
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str],
        timeout: Timeout | None = None,
    ) -> RawResponse:
        # the hot path (every `generate`): no objects beyond aiohttp's own and the RawResponse
        try:
            async with self._send(method, path, content, headers, timeout) as response:
                return RawResponse(response.status, response.headers, await response.read())
        except AIOHTTP_ERRORS as exc:
            raise translate(exc) from exc

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str],
        timeout: Timeout | None = None,
    ) -> AsyncIterator[AiohttpStream]:
        try:
            response = await self._send(method, path, content, headers, timeout)
        except AIOHTTP_ERRORS as exc:
            raise translate(exc) from exc
        try:
            yield AiohttpStream(response)
        finally:
            # closes the connection instead of pooling it if the body was not read to its end
            response.release()

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class AiohttpStream:
    """An answer being read. ``aiter_bytes`` is a plain iterator (this object), not an async generator, so
    nothing is left to finalise when a caller stops reading early."""

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = response.headers

    async def aread(self) -> bytes:
        try:
            return await self._response.read()
        except AIOHTTP_ERRORS as exc:
            raise translate(exc) from exc

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._response.content.readany()
        except AIOHTTP_ERRORS as exc:
            raise translate(exc, mid_stream=True) from exc
        if not chunk:
            raise StopAsyncIteration
        return chunk
