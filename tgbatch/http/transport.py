"""HTTP plumbing: default transports and timeouts, the in-process ``sim://`` transports, and the one place where
httpx's (and aiohttp's) exceptions become tgbatch's.

Why not stock httpx for async: on this 2-core machine at 64 concurrent requests, a request costs about 2.9 ms
of client CPU through stock ``httpx.AsyncClient`` (connection-pool contention, encode/httpx#3215), 0.57 ms
through httpx over the ``httpx-aiohttp`` transport, and 0.20 ms through aiohttp alone. So the async client's
hot path, ``generate``, posts through ``FastPoster`` (one aiohttp session); streaming, ``/info`` and
``/health`` go through httpx over the aiohttp transport; and a caller's own ``httpx.AsyncClient`` (e.g. with
``httpx.MockTransport``) or the in-process ``sim://`` app is used for everything, as given.
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import anyio.from_thread
import httpx
from httpx_aiohttp import AiohttpTransport

from tgbatch.errors import IncompleteStreamError, RequestTimeoutError, TGIError, TransportError

SIM_SCHEME = "sim"
SIM_BASE_URL = "http://sim"

#: Generations take minutes and streams send keep-alives every 15 s: the read timeout must exceed both.
#: The pool timeout is unbounded because callers bound concurrency themselves (the runner does).
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=None)
#: httpx's default of 100 connections would cap a high-concurrency run
DEFAULT_LIMITS = httpx.Limits(max_connections=1024, max_keepalive_connections=1024, keepalive_expiry=30.0)


def as_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, httpx.Timeout):
        return timeout
    # a bare number bounds connecting and each read, as in requests/text-generation; the pool wait stays open
    return httpx.Timeout(connect=min(float(timeout), 10.0), read=float(timeout), write=float(timeout), pool=None)


def is_sim_url(url: str) -> bool:
    return urlsplit(url).scheme == SIM_SCHEME


def _sim_app(url: str) -> Any:
    # imported lazily: the simulator (Starlette) is only loaded when a sim:// URL is used
    from tgbatch.sim import app_from_sim_url

    return app_from_sim_url(url)


class SimAsyncTransport(httpx.ASGITransport):
    """The simulator app, in-process. A failing app looks like a dropped connection, and the read timeout is
    enforced (``ASGITransport`` ignores timeouts, and a stalled simulated server must still time out)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        read_timeout = request.extensions.get("timeout", {}).get("read")
        try:
            with anyio.fail_after(read_timeout):
                return await super().handle_async_request(request)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("simulated server did not answer in time", request=request) from exc
        except httpx.HTTPError:
            raise
        except Exception as exc:  # the app raised: to a client that is a closed connection
            raise httpx.RemoteProtocolError(
                f"Server disconnected without sending a complete response ({type(exc).__name__})",
                request=request,
            ) from exc


class SimSyncTransport(httpx.BaseTransport):
    """The simulator app for the sync client: the async transport driven from a private event loop thread."""

    def __init__(self, app: Any) -> None:
        self._inner = SimAsyncTransport(app=app)
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            inner = httpx.Request(
                request.method, request.url, headers=request.headers, content=content, extensions=request.extensions
            )
            response = await self._inner.handle_async_request(inner)
            body = await response.aread()
            return response.status_code, response.headers.raw, body

        status, headers, body = self._portal.call(call)
        return httpx.Response(status, headers=headers, content=body, request=request)

    def close(self) -> None:
        self._portal_cm.__exit__(None, None, None)


def make_async_http_client(
    base_url: str,
    *,
    timeout: httpx.Timeout,
    cookies: dict[str, str] | None,
) -> httpx.AsyncClient:
    if is_sim_url(base_url):
        transport: httpx.AsyncBaseTransport = SimAsyncTransport(app=_sim_app(base_url))
        base_url = SIM_BASE_URL
    else:
        transport = AiohttpTransport(limits=DEFAULT_LIMITS)
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout, cookies=cookies)


def make_sync_http_client(
    base_url: str,
    *,
    timeout: httpx.Timeout,
    cookies: dict[str, str] | None,
) -> httpx.Client:
    transport: httpx.BaseTransport | None = None
    if is_sim_url(base_url):
        transport = SimSyncTransport(_sim_app(base_url))
        base_url = SIM_BASE_URL
    return httpx.Client(
        base_url=base_url,
        transport=transport,
        timeout=timeout,
        cookies=cookies,
        limits=DEFAULT_LIMITS,
    )


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY`` etc.), unless ``NO_PROXY`` exempts it."""
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class FastPoster:
    """POSTs through one aiohttp session: the async client's ``generate`` path when it owns its HTTP stack.
    Created lazily, because an aiohttp session belongs to the event loop it was made on."""

    def __init__(self, base_url: str, timeout: httpx.Timeout, cookies: dict[str, str] | None) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout.connect, sock_read=timeout.read)
        self._cookies = cookies
        # HTTP(S)_PROXY / NO_PROXY, as httpx honours them, read once: aiohttp's trust_env would re-read the
        # environment and ~/.netrc in a thread for every request
        self._proxy = env_proxy(base_url)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=DEFAULT_LIMITS.max_connections or 0, keepalive_timeout=DEFAULT_LIMITS.keepalive_expiry
        )
        return aiohttp.ClientSession(connector=connector, timeout=self._timeout, cookies=self._cookies)

    async def post(self, url: str, content: bytes, headers: dict[str, str]) -> tuple[int, Any, bytes]:
        """``(status, headers, body)``; foreign errors are translated by the caller's ``translated()``."""
        if self._session is None:
            self._session = self._open()
        async with self._session.post(
            url, data=content, headers=headers, allow_redirects=False, proxy=self._proxy
        ) as response:
            return response.status, response.headers, await response.read()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def translate(exc: BaseException, *, mid_stream: bool = False) -> TGIError:
    """The one translation of foreign transport exceptions. ``mid_stream``: the answer had started (status
    200), so a broken connection means a cut stream rather than no answer."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return RequestTimeoutError(f"Timed out: {message}")
    if isinstance(exc, httpx.UnsupportedProtocol | aiohttp.InvalidURL):
        return TransportError(f"Unsupported URL: {message} (use http://, https:// or sim://)", retryable=False)
    if mid_stream:
        return IncompleteStreamError(f"The stream was cut: {message}", status_code=200)
    return TransportError(f"No answer from the server: {message}")


#: what ``translate`` accepts
FOREIGN_ERRORS = (httpx.TransportError, aiohttp.ClientError, TimeoutError, OSError)


@contextlib.contextmanager
def translated(*, mid_stream: bool = False) -> Iterator[None]:
    try:
        yield
    except FOREIGN_ERRORS as exc:
        raise translate(exc, mid_stream=mid_stream) from exc
