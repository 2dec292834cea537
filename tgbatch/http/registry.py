"""Which transport serves a URL: a scheme table, as fsspec's ``known_implementations``.

A scheme maps to the dotted name of a transport factory, imported on first use, so the client library never
imports what serves a scheme (the simulator registers ``sim``) until a URL with that scheme is opened. Any
scheme not in the table goes to the aiohttp transport (which refuses what is not http or https).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

from tgbatch.http.aiohttp import AiohttpTransport
from tgbatch.http.base import Timeout, Transport


class TransportFactory(Protocol):
    def __call__(self, url: str, *, timeout: Timeout, cookies: Mapping[str, str] | None) -> Transport: ...


#: scheme -> "package.module:factory" (or the factory itself)
KNOWN_SCHEMES: dict[str, str | TransportFactory] = {
    "sim": "tgbatch.sim.transport:make_transport",
}


def register_scheme(scheme: str, factory: str | TransportFactory) -> None:
    """Serve ``scheme://`` URLs with ``factory`` (a callable or its dotted name ``"module:function"``)."""
    KNOWN_SCHEMES[scheme.lower()] = factory


def open_transport(
    base_url: str,
    *,
    timeout: Timeout,
    cookies: Mapping[str, str] | None = None,
    http_client: object | None = None,
    blocking_ok: bool = False,
) -> Transport:
    """The transport for ``base_url``: a caller's httpx client adapted, the registered scheme's, or aiohttp's.
    ``blocking_ok``: a sync ``httpx.Client`` may be adapted (see ``tgbatch.http.httpx.adapt``)."""
    if http_client is not None:
        from tgbatch.http.httpx import adapt  # httpx is imported only by those who bring an httpx client

        return adapt(http_client, base_url, timeout=timeout, blocking_ok=blocking_ok)
    factory = KNOWN_SCHEMES.get(urlsplit(base_url).scheme.lower())
    if factory is None:
        return AiohttpTransport(base_url, timeout=timeout, cookies=cookies)
    if isinstance(factory, str):
        factory = _load(factory)
    return factory(base_url, timeout=timeout, cookies=cookies)


@functools.cache
def _load(dotted: str) -> TransportFactory:
    module, _, name = dotted.partition(":")
    factory: TransportFactory = getattr(importlib.import_module(module), name)
    return factory
