"""Shared fixtures. No test reaches the network: servers are in-process (``httpx.MockTransport``, ``sim://``)
or ``tgbatch serve`` on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture
def anyio_backend() -> str:
    # aiohttp (the default async transport) needs asyncio
    return "asyncio"


def reference_dir() -> Path:
    return REFERENCE


def load_json(path: Path) -> object:
    return json.loads(path.read_text())


Handler = Callable[..., object]
