"""``tgbatch serve`` over real HTTP: determinism across two server processes, drops over uvicorn, and the CLI's
flag checking (the peer clients against it: ``test_peer_clients.py``)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from ._server_util import PROMPT, ROOT, SCHEMA, LiveServer, body, cli_command, live_servers, sse_events

# every test here starts processes (tgbatch serve, tgbatch run): `pytest -m 'not slow'` skips them
pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def servers() -> Iterator[list[LiveServer]]:
    with live_servers((), (), ("--drop-rate", "1"), ("--api-key", "k3y")) as started:
        yield started


@pytest.fixture(scope="module")
def url(servers: list[LiveServer]) -> str:
    return servers[0].url


# -- the server process -----------------------------------------------------------------------------------


# greedy or seeded: an unseeded sampled request (and best_of) draws a random seed, as on TGI
REQUESTS = [
    body(PROMPT, max_new_tokens=12, details=True, decoder_input_details=True, top_n_tokens=2),
    body(PROMPT, max_new_tokens=12, details=True, do_sample=True, seed=2**63 + 11),
    body(PROMPT, max_new_tokens=12, details=True, temperature=0.5, top_k=10, stop=["the"], seed=7),
    body(PROMPT, grammar={"type": "json", "value": SCHEMA}, do_sample=True, seed=3),
]


def test_deterministic_across_processes(servers: list[LiveServer]) -> None:
    a, b = servers[0].url, servers[1].url
    for request in REQUESTS:
        first = httpx.post(a + "/generate", json=request, timeout=30)
        second = httpx.post(b + "/generate", json=request, timeout=30)
        assert first.status_code == 200
        assert first.content == second.content
    stream_a = httpx.post(a + "/generate_stream", json=REQUESTS[1], timeout=30)
    stream_b = httpx.post(b + "/generate_stream", json=REQUESTS[1], timeout=30)
    assert stream_a.content == stream_b.content
    assert len(sse_events(stream_a.text)) == 12


def test_drop_closes_the_connection(servers: list[LiveServer]) -> None:
    url = servers[2].url
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(url + "/generate", json=body(max_new_tokens=3), timeout=30)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(url + "/generate_stream", json=body(max_new_tokens=30), timeout=30)
    # the server survives its own faults
    assert httpx.get(url + "/health", timeout=30).status_code == 200


def test_http_rejections_over_uvicorn(servers: list[LiveServer]) -> None:
    url = servers[3].url
    unauthorized = httpx.post(url + "/generate", json=body(), timeout=30)
    assert (unauthorized.status_code, unauthorized.content) == (401, b"")
    headers = {"authorization": "Bearer k3y"}
    plain = httpx.post(url + "/generate", content=b"{}", headers=headers, timeout=30)
    assert plain.status_code == 415
    assert plain.headers["content-type"] == "text/plain; charset=utf-8"
    ok = httpx.post(url + "/generate", json=body(max_new_tokens=2), headers=headers, timeout=30)
    assert ok.status_code == 200
    assert httpx.get(url + "/info", timeout=30).json()["model_id"] == "tgbatch/sim"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--overload-rate", "2"], "--overload-rate"),
        (["--max-input-tokens", "9000"], "--max-total-tokens"),
        (["--decode-ms-per-token", "fast"], "--decode-ms-per-token"),
    ],
)
def test_bad_flags_exit_2(flags: list[str], named: str) -> None:
    proc = subprocess.run(cli_command(*flags), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert named in proc.stderr


def test_a_taken_port_is_an_error_before_serving_is_announced() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(cli_command("--port", str(port)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "choose another --port" in result.stderr
    assert "simulated TGI" not in result.stderr and "Traceback" not in result.stderr
