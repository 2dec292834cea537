"""OpenAI Batch files as a job's input: what a line holds (``custom_id``, ``method``, ``url``, ``body``), which
routes tgbatch runs, and the look at a file's first line that tells a batch file apart from other JSON Lines and
decides the job's api (one url per file, as OpenAI requires)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tgbatch.errors import SpecError

KEYS = ("custom_id", "method", "url", "body")
#: the routes a batch line may name, and the api each is sent with
ROUTES = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}
URLS = {api: url for url, api in ROUTES.items()}
_PEEK_BYTES = 1 << 20


def first_line(path: Path) -> dict[str, Any] | None:
    """The first non-blank line of a (plain) JSON Lines file as a mapping, or ``None`` when it is not one."""
    try:
        with open(path, "rb") as f:
            for raw in f:
                if raw.strip():
                    value = json.loads(raw[:_PEEK_BYTES] if len(raw) > _PEEK_BYTES else raw)
                    return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None
    return None


def looks_like_batch(line: dict[str, Any] | None) -> bool:
    return line is not None and all(key in line for key in KEYS)


def api_of_url(url: Any, where: str) -> str:
    """The api of a batch line's url; ``SpecError`` naming the routes tgbatch runs otherwise."""
    api = ROUTES.get(url) if isinstance(url, str) else None
    if api is None:
        raise SpecError(
            f"dataset.path: {where} has url {url!r}: tgbatch runs OpenAI Batch lines of "
            f"{' and '.join(repr(u) for u in ROUTES)} only (embeddings, responses and other routes are not "
            "text generation jobs); split those lines into a file of their own"
        )
    return api
