"""A caller's own httpx client behind the transport seam: ``httpx.MockTransport`` in tests, ``httpx.ASGITransport``
for an app in-process (the simulator's sim:// transport is one), or an httpx client configured as its owner
wants. Its proxies, TLS, cookies and pool are the caller's; the errors are translated as for every transport.

``HttpxSyncTransport`` adapts an ``httpx.Client``: its calls block the event loop they run on, which is right
only for the sync ``Client``, whose private loop serves nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import httpx

from tgbatch.http.base import DEFAULT_TIMEOUT, RawResponse, Timeout, Transport
from tgbatch.http.errors import AIOHTTP_ERRORS, translate

#: what the adapters catch: httpx's errors, and aiohttp's in case the caller's client runs over aiohttp
HTTPX_ERRORS = (httpx.TransportError, *AIOHTTP_ERRORS)


def httpx_timeout(timeout: Timeout) -> httpx.Timeout:
    return httpx.Timeout(connect=timeout.connect, read=timeout.read, write=timeout.write, pool=timeout.pool)


class _HttpxBase:
    def __init__(self, base_url: str, *, timeout: Timeout, owned: bool) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._timeout = httpx_timeout(timeout)
        #: closed with this transport only if it made the client (a caller's client is the caller's to close)
        self._owned = owned

    def _timeout_for(self, timeout: Timeout | None) -> httpx.Timeout:
        return self._timeout if timeout is None else httpx_timeout(timeout)


class HttpxTransport(_HttpxBase):
    """``Transport`` over an ``httpx.AsyncClient``."""

    def __init__(
        self, client: httpx.AsyncClient, base_url: str, *, timeout: Timeout = DEFAULT_TIMEOUT, owned: bool = False
    ) -> None:
        super().__init__(base_url, timeout=timeout, owned=owned)
        self.client = client

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str],
        timeout: Timeout | None = None,
    ) -> RawResponse:
        try:
            response = await self.client.request(
                method, self.base_url + path, content=content, headers=headers, timeout=self._timeout_for(timeout)
            )
        except HTTPX_ERRORS as exc:
            raise translate(exc) from exc
        return RawResponse(response.status_code, response.headers, response.content)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str],
        timeout: Timeout | None = None,
    ) -> AsyncIterator[HttpxStream]:
        url, httpx_timeout_ = self.base_url + path, self._timeout_for(timeout)
        opened = self.client.stream(method, url, content=content, headers=headers, timeout=httpx_timeout_)
        try:
            response = await opened.__aenter__()
        except HTTPX_ERRORS as exc:
            raise translate(exc) from exc
        try:
            yield HttpxStream(response)
        finally:
            await opened.__aexit__(None, None, None)

    async def aclose(self) -> None:
        if self._owned:
            await self.client.aclose()


class HttpxStream:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = response.headers

    async def aread(self) -> bytes:
        try:
            return await self._response.aread()
        except HTTPX_ERRORS as exc:
            raise translate(exc) from exc

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except HTTPX_ERRORS as exc:
            raise translate(exc, mid_stream=True) from exc


class HttpxSyncTransport(_HttpxBase):
    """``Transport`` over an ``httpx.Client``; blocks the event loop it runs on (see the module's docstring)."""

    def __init__(
        self, client: httpx.Client, base_url: str, *, timeout: Timeout = DEFAULT_TIMEOUT, owned: bool = False
    ) -> None:
        super().__init__(base_url, timeout=timeout, owned=owned)
        self.client = client

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str],
        timeout: Timeout | None = None,
    ) -> RawResponse:
        try:
            response = self.client.request(
                method, self.base_url + path, content=content, headers=headers, timeout=self._timeout_for(timeout)
            )
        except HTTPX_ERRORS as exc:
            raise translate(exc) from exc
        return RawResponse(response.status_code, response.headers, response.content)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str],
        timeout: Timeout | None = None,
    ) -> AsyncIterator[HttpxSyncStream]:
        url, httpx_timeout_ = self.base_url + path, self._timeout_for(timeout)
        opened = self.client.stream(method, url, content=content, headers=headers, timeout=httpx_timeout_)
        try:
            response = opened.__enter__()
        except HTTPX_ERRORS as exc:
            raise translate(exc) from exc
        try:
            yield HttpxSyncStream(response)
        finally:
            opened.__exit__(None, None, None)

    async def aclose(self) -> None:
        if self._owned:
            self.client.close()


class HttpxSyncStream(HttpxStream):
    async def aread(self) -> bytes:
        try:
            return self._response.read()
        except HTTPX_ERRORS as exc:
            raise translate(exc) from exc

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            for chunk in self._response.iter_bytes():
                yield chunk
        except HTTPX_ERRORS as exc:
            raise translate(exc, mid_stream=True) from exc


def adapt(client: object, base_url: str, *, timeout: Timeout, blocking_ok: bool) -> Transport:
    """The adapter for a caller's httpx client. ``blocking_ok``: an ``httpx.Client`` may be used (by the sync
    ``Client``, on its private loop); on a caller's event loop it would block every other task."""
    if isinstance(client, httpx.AsyncClient):
        return HttpxTransport(client, base_url, timeout=timeout)
    if isinstance(client, httpx.Client):
        if not blocking_ok:
            raise TypeError("AsyncClient needs an httpx.AsyncClient: an httpx.Client would block the event loop")
        return HttpxSyncTransport(client, base_url, timeout=timeout)
    raise TypeError(f"http_client must be an httpx.AsyncClient or httpx.Client, not {type(client).__name__}")
