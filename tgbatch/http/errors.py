"""The one translation of foreign transport exceptions (aiohttp's, httpx's, OSError, TimeoutError) into
tgbatch's error tree. Every transport calls ``translate`` and raises its result ``from`` the original."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp

from tgbatch.errors import IncompleteStreamError, RequestTimeoutError, ServerError, TransportError

#: what the aiohttp transport catches; the httpx adapters catch ``httpx.TransportError`` as well
AIOHTTP_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)

_BAD_URL = (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)


def translate(exc: BaseException, *, mid_stream: bool = False) -> ServerError:
    """``mid_stream``: the answer had started (a stream's headers were in), so a broken connection means a cut
    stream rather than no answer."""
    message = str(exc) or type(exc).__name__
    # httpx's classes are looked up only if httpx is loaded: an httpx error cannot exist otherwise, and the
    # aiohttp path does not pay for importing it
    httpx = sys.modules.get("httpx")
    if isinstance(exc, TimeoutError) or (httpx is not None and isinstance(exc, httpx.TimeoutException)):
        # no connection within the connect timeout: as down as a refused one
        connect = isinstance(exc, aiohttp.ConnectionTimeoutError) or (
            httpx is not None and isinstance(exc, httpx.ConnectTimeout)
        )
        return RequestTimeoutError(f"Timed out{' connecting' if connect else ''}: {message}", unreachable=connect)
    if isinstance(exc, _BAD_URL) or (httpx is not None and isinstance(exc, httpx.UnsupportedProtocol)):
        # retrying cannot fix the URL
        return TransportError(
            f"Unsupported URL: {message} (use http://, https:// or a registered scheme such as sim://)", retryable=False
        )
    if mid_stream:
        return IncompleteStreamError(f"The stream was cut: {message}", status_code=200)
    cause = _connect_failure(exc, httpx)
    if cause is not None:
        return TransportError(f"{cause}: {message}", unreachable=True)
    return TransportError(f"No answer from the server: {message}")


def _connect_failure(exc: BaseException, httpx: Any) -> str | None:
    """The reason no connection was made, in words, or ``None`` when a connection was made (and then lost)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "unknown host"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "TLS failed"
    if isinstance(exc, aiohttp.ClientConnectorError) or (httpx is not None and isinstance(exc, httpx.ConnectError)):
        chain = [exc, exc.__cause__, exc.__context__, getattr(exc, "os_error", None)]
        if any(isinstance(e, ConnectionRefusedError) for e in chain):
            return "connection refused"
        return "cannot connect"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return None


@contextlib.contextmanager
def translated(foreign: tuple[type[BaseException], ...], *, mid_stream: bool = False) -> Iterator[None]:
    """Translate ``foreign`` exceptions raised in the block (for code off the hot path)."""
    try:
        yield
    except foreign as exc:
        raise translate(exc, mid_stream=mid_stream) from exc
