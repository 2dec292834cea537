"""Which proxy the environment names for a URL, read once per transport.

aiohttp's ``trust_env`` would re-read the environment and ``~/.netrc`` (in a thread) for every request, which
was measured to cost more than the rest of a request's client CPU."""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit


def env_proxy(url: str) -> str | None:
    """The proxy ``HTTP_PROXY`` or ``HTTPS_PROXY`` (either case) names for ``url``'s scheme, unless ``NO_PROXY``
    exempts its host. ``ALL_PROXY`` is not read: it often names a SOCKS proxy, which aiohttp cannot use."""
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)
