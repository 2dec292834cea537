"""Every real TGI /generate response recorded upstream parses into ``Response`` and serialises back equal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tgbatch.client import Client, InferenceAPIAsyncClient, Response

WIRE_ORDER = ("finish_reason", "generated_tokens", "seed", "prefill", "tokens", "best_of_sequences", "top_tokens")
SNAPSHOTS = sorted((Path(__file__).parent / "data" / "tgi-snapshots").rglob("*.json"))


def _as_wire(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshots are pydantic dumps: keys the server omits appear as null. Drop those to get the wire body."""
    out = json.loads(json.dumps(snapshot))
    details = out.get("details")
    if details is not None:
        for key in ("best_of_sequences", "top_tokens"):
            if details.get(key) is None:
                details.pop(key, None)
    return out


def _responses(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else [data]


def test_all_generate_snapshots_are_present() -> None:
    assert len(SNAPSHOTS) == 28


@pytest.mark.parametrize("path", SNAPSHOTS, ids=lambda p: p.stem)
def test_snapshot_round_trips(path: Path) -> None:
    for snapshot in _responses(path):
        wire = _as_wire(snapshot)
        response = Response.model_validate_json(json.dumps(wire))
        assert response.to_wire() == wire
        # the server's key order, which a stored response keeps
        assert list(response.to_wire()["details"]) == [k for k in WIRE_ORDER if k in wire["details"]]


@pytest.mark.parametrize("path", SNAPSHOTS, ids=lambda p: p.stem)
def test_snapshot_replayed_through_clients(path: Path) -> None:
    """Replayed as /generate's object body (sync) and as the compat route's list body (async)."""
    wire = _as_wire(_responses(path)[0])

    def generate_route(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/generate"
        return httpx.Response(200, json=wire)

    with Client("http://tgi", http_client=httpx.Client(transport=httpx.MockTransport(generate_route))) as client:
        assert client.generate("prompt").to_wire() == wire

    def compat_route(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/models/some/model"
        return httpx.Response(200, json=[wire])

    async def main() -> Response:
        http = httpx.AsyncClient(transport=httpx.MockTransport(compat_route))
        client = InferenceAPIAsyncClient("some/model", base_url="http://api", http_client=http)
        return await client.generate("prompt")

    assert anyio.run(main).to_wire() == wire


def test_response_without_details_is_accepted() -> None:
    response = Response.model_validate({"generated_text": "hello"})
    assert response.details is None
    assert response.to_wire() == {"generated_text": "hello"}


def test_u64_seed_round_trips_exactly() -> None:
    seed = 18435558523380366744  # recorded from a real server; above 2**63
    body = (
        '{"generated_text":"x","details":{"finish_reason":"length","generated_tokens":1,'
        f'"seed":{seed},"prefill":[],"tokens":[]}}}}'
    )
    response = Response.model_validate_json(body)
    assert response.details is not None and response.details.seed == seed
    assert json.loads(json.dumps(response.to_wire()))["details"]["seed"] == seed
