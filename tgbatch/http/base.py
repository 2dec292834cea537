"""The transport seam: what every backend's client asks of HTTP, and the settings a transport is built with.

A ``Transport`` is bound to one base URL and raises only tgbatch errors (``TransportError``,
``RequestTimeoutError``, ``IncompleteStreamError`` for a stream cut after its headers): each implementation
passes foreign exceptions through ``tgbatch.http.errors.translate``. Answers that are HTTP errors (4xx, 5xx)
are not exceptions here: mapping them is the protocol's job (``backends/*/wire.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds, ``None`` for no limit. The field names are httpx's, so an ``httpx.Timeout`` converts as is."""

    connect: float | None
    read: float | None
    write: float | None
    pool: float | None


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """Connection pool size (field names as ``httpx.Limits``)."""

    max_connections: int | None
    max_keepalive_connections: int | None
    keepalive_expiry: float | None


#: Generations take minutes and streams send keep-alives every 15 s: the read timeout must exceed both.
#: The pool timeout is unbounded because callers bound concurrency themselves (the runner does).
DEFAULT_TIMEOUT = Timeout(connect=10.0, read=600.0, write=60.0, pool=None)
#: a default of 100 connections (httpx's, aiohttp's) would cap a high-concurrency run
DEFAULT_LIMITS = PoolLimits(max_connections=1024, max_keepalive_connections=1024, keepalive_expiry=30.0)


def as_timeout(timeout: object) -> Timeout:
    """``None`` → the default; a number bounds connecting (at most 10 s) and each read and write, as in
    requests and text-generation, the pool wait staying open; a ``Timeout`` or an ``httpx.Timeout`` as given."""
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, Timeout):
        return timeout
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        seconds = float(timeout)
        return Timeout(connect=min(seconds, 10.0), read=seconds, write=seconds, pool=None)
    try:  # an httpx.Timeout, read by its fields so that httpx need not be imported
        return Timeout(
            connect=timeout.connect,  # type: ignore[attr-defined]
            read=timeout.read,  # type: ignore[attr-defined]
            write=timeout.write,  # type: ignore[attr-defined]
            pool=timeout.pool,  # type: ignore[attr-defined]
        )
    except AttributeError:
        raise TypeError(f"timeout must be seconds, a Timeout or an httpx.Timeout, not {timeout!r}") from None


class RawResponse:
    """A whole answer: status, headers (a case-insensitive mapping) and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class RawStream(Protocol):
    """An answer whose body is read as it arrives (``Transport.stream``)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""
        ...

    async def aread(self) -> bytes:
        """The rest of the body (an error answer's, typically)."""
        ...

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body in chunks as they arrive; a connection cut before the end raises ``IncompleteStreamError``."""
        ...


class Transport(Protocol):
    """One connection pool to one server (``base_url``), for every call a client makes."""

    base_url: str

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str],
        timeout: Timeout | None = None,
    ) -> RawResponse:
        """Send and read the whole answer. ``path`` is appended to ``base_url``; ``timeout`` overrides the
        transport's for this call."""
        ...

    def stream(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str],
        timeout: Timeout | None = None,
    ) -> AbstractAsyncContextManager[RawStream]:
        """Send, and yield the answer once its headers are in; leaving the block releases the connection."""
        ...

    async def aclose(self) -> None: ...
