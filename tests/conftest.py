"""Shared fixtures. No test reaches the network: servers are in-process (``httpx.MockTransport``, ``sim://``)
or ``tgbatch serve`` on loopback."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # aiohttp (the default async transport) needs asyncio
    return "asyncio"
