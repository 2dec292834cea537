"""One async HTTP transport for every call of every backend's client, and the pieces around it.

- ``base``: the ``Transport`` seam (``request`` -> ``RawResponse``, ``stream`` -> ``RawStream``), ``Timeout``,
  ``PoolLimits`` and their defaults;
- ``aiohttp``: ``AiohttpTransport``, the default: one session per client for POST, SSE and GET, with proxy,
  TLS, cookies, pool limit and timeouts set once;
- ``httpx``: ``HttpxTransport`` / ``HttpxSyncTransport``, a caller's own httpx client behind the same seam;
- ``errors``: ``translate``, the one place where foreign exceptions become tgbatch's;
- ``sse``: server-sent events from bytes, for every transport;
- ``registry``: URL scheme -> transport factory (``sim`` -> the simulator's, imported on first use);
- ``blocking``: ``BackgroundLoop``, on which the sync client runs the async transport;
- ``proxy``: ``env_proxy``, the environment's proxy for a URL, read once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tgbatch.http.aiohttp import AiohttpTransport
from tgbatch.http.base import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    PoolLimits,
    RawResponse,
    RawStream,
    Timeout,
    Transport,
    as_timeout,
)
from tgbatch.http.blocking import BackgroundLoop
from tgbatch.http.errors import translate
from tgbatch.http.proxy import env_proxy
from tgbatch.http.registry import KNOWN_SCHEMES, open_transport, register_scheme
from tgbatch.http.sse import ServerSentEvent, SSEDecoder, aiter_sse

if TYPE_CHECKING:
    from tgbatch.http.httpx import HttpxSyncTransport, HttpxTransport


def __getattr__(name: str) -> Any:
    # the httpx adapters load httpx: only for those who use them
    if name in ("HttpxTransport", "HttpxSyncTransport"):
        from tgbatch.http import httpx as adapters

        return getattr(adapters, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "KNOWN_SCHEMES",
    "AiohttpTransport",
    "BackgroundLoop",
    "HttpxSyncTransport",
    "HttpxTransport",
    "PoolLimits",
    "RawResponse",
    "RawStream",
    "SSEDecoder",
    "ServerSentEvent",
    "Timeout",
    "Transport",
    "aiter_sse",
    "as_timeout",
    "env_proxy",
    "open_transport",
    "register_scheme",
    "translate",
]
