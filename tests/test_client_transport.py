"""One transport for every call: `generate`, `generate_stream`, `/info` and `/health` fail alike, use the same
proxy, cookies and headers, sync and async; the sync client lets the interpreter exit; the client library loads
the simulator only through the sim:// scheme registry. Against loopback servers (tests/_loopback.py)."""

from __future__ import annotations

import ast
import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tgbatch import errors
from tgbatch.client import AsyncClient, Client

from ._loopback import CANNED, STREAM_EVENTS, closing_server, recording_server

ROOT = Path(__file__).resolve().parents[1]
PROXY_VARS = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


def four_calls_async(url: str, **kwargs: Any) -> list[Any]:
    """generate, generate_stream, info, health through one ``AsyncClient``: each one's result or error."""

    async def main() -> list[Any]:
        async with AsyncClient(url, timeout=5, **kwargs) as client:

            async def stream() -> list[Any]:
                return [event async for event in client.generate_stream("x")]

            calls: list[Callable[[], Any]] = [lambda: client.generate("x"), stream, client.info, client.health]
            out = []
            for call in calls:
                try:
                    out.append(await call())
                except errors.TGBatchError as exc:
                    out.append(exc)
            return out

    return anyio.run(main)


def four_calls_sync(url: str, **kwargs: Any) -> list[Any]:
    """The same through one ``Client``."""
    with Client(url, timeout=5, **kwargs) as client:
        calls: list[Callable[[], Any]] = [
            lambda: client.generate("x"),
            lambda: list(client.generate_stream("x")),
            client.info,
            client.health,
        ]
        out = []
        for call in calls:
            try:
                out.append(call())
            except errors.TGBatchError as exc:
                out.append(exc)
        return out


kinds = pytest.mark.parametrize("four_calls", [four_calls_async, four_calls_sync], ids=["async", "sync"])


def _check_answers(outcomes: list[Any]) -> None:
    generated, events, info, healthy = outcomes
    assert generated.generated_text == "ok"
    assert [e.index for e in events] == [e["index"] for e in STREAM_EVENTS]
    assert info.model_id == "loopback/tgi" and healthy is True


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@kinds
def test_connection_closed_at_once_is_the_same_transport_error_for_every_call(four_calls, no_proxy_env) -> None:
    with closing_server() as url:
        outcomes = four_calls(url)
    assert [type(o) for o in outcomes] == [errors.TransportError] * 4, outcomes
    assert all(o.retryable and o.__cause__ is not None for o in outcomes)


@kinds
@pytest.mark.parametrize("var", ["HTTP_PROXY", "http_proxy"])
def test_every_call_goes_through_the_env_proxy(four_calls, var: str, no_proxy_env) -> None:
    with recording_server() as proxy, recording_server() as tgi:
        no_proxy_env.setenv(var, proxy.url)
        _check_answers(four_calls(tgi.url))
    assert proxy.request_lines == [
        f"POST {tgi.url}/generate HTTP/1.1",
        f"POST {tgi.url}/generate_stream HTTP/1.1",
        f"GET {tgi.url}/info HTTP/1.1",
        f"GET {tgi.url}/health HTTP/1.1",
    ]
    assert tgi.seen == []


@kinds
def test_no_proxy_exempts_the_host_for_every_call(four_calls, no_proxy_env) -> None:
    with recording_server() as proxy, recording_server() as tgi:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
        _check_answers(four_calls(tgi.url))
    assert proxy.seen == []
    assert tgi.request_lines == [
        "POST /generate HTTP/1.1",
        "POST /generate_stream HTTP/1.1",
        "GET /info HTTP/1.1",
        "GET /health HTTP/1.1",
    ]


def test_sync_and_async_send_the_same_headers_and_cookies_on_every_call(no_proxy_env) -> None:
    with recording_server() as tgi:
        for four_calls in (four_calls_async, four_calls_sync):
            _check_answers(four_calls(tgi.url, token="hf_x", cookies={"session": "abc"}))
    sent = [s.headers for s in tgi.seen]
    assert sent[:4] == sent[4:]  # async, then sync: the same headers, in the same order
    for headers in sent:
        assert headers["cookie"] == "session=abc"
        assert headers["authorization"] == "Bearer hf_x"
        assert headers["user-agent"].startswith("tgbatch/")
    assert sent[1]["accept"] == "text/event-stream"


# -- SSE framing, on both sides of the seam (aiohttp on loopback, a caller's httpx client) -------------------


def _framed(newline: str, *, keepalive: bool, split_data: bool) -> bytes:
    out = []
    for event in STREAM_EVENTS:
        if keepalive:
            out.append(f":{newline}{newline}")
        data = json.dumps(event)
        if split_data:  # one event's data over two lines, rejoined with "\n" (still the same JSON)
            head, tail = data.split(", ", 1)
            out.append(f"event: message{newline}data: {head},{newline}data:{tail}{newline}{newline}")
        else:
            out.append(f"data:{data}{newline}{newline}")
    return "".join(out).encode()


FRAMINGS = {
    "lf": _framed("\n", keepalive=False, split_data=False),
    "crlf_keepalive": _framed("\r\n", keepalive=True, split_data=False),
    "cr_multiline": _framed("\r", keepalive=True, split_data=True),
    "lf_multiline": _framed("\n", keepalive=False, split_data=True),
}


def _stream_loopback(kind: str, body: bytes, announced: int | None = None) -> list[Any]:
    with recording_server() as tgi:
        tgi.answers["/generate_stream"] = (200, "text/event-stream", body)
        if announced is not None:
            tgi.announced["/generate_stream"] = announced
        if kind == "sync":
            with Client(tgi.url, timeout=5) as client:
                return list(client.generate_stream("x"))

        async def main() -> list[Any]:
            async with AsyncClient(tgi.url, timeout=5) as client:
                return [e async for e in client.generate_stream("x")]

        return anyio.run(main)


def _stream_mock(kind: str, body: bytes, announced: int | None = None) -> list[Any]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    if kind == "sync":
        return list(
            Client("http://tgi", http_client=httpx.Client(transport=httpx.MockTransport(handler))).generate_stream("x")
        )

    async def main() -> list[Any]:
        client = AsyncClient("http://tgi", http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        return [e async for e in client.generate_stream("x")]

    return anyio.run(main)


@pytest.mark.parametrize("kind", ["async", "sync"])
@pytest.mark.parametrize("stream", [_stream_loopback, _stream_mock], ids=["aiohttp", "httpx"])
@pytest.mark.parametrize("framing", list(FRAMINGS))
def test_sse_line_endings_keepalives_and_multiline_data(stream, kind: str, framing: str, no_proxy_env) -> None:
    events = stream(kind, FRAMINGS[framing])
    assert [e.index for e in events] == [1, 2]
    assert events[-1].generated_text == " Rayleigh"


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_stream_cut_mid_body_over_aiohttp_is_incomplete(kind: str, no_proxy_env) -> None:
    # the server announces more than it sends and closes: a cut connection, not a clean end
    body = FRAMINGS["lf"]
    with pytest.raises(errors.IncompleteStreamError) as info:
        _stream_loopback(kind, body[:-30], announced=len(body))
    assert info.value.retryable and info.value.__cause__ is not None


@pytest.mark.parametrize("stream", [_stream_loopback, _stream_mock], ids=["aiohttp", "httpx"])
def test_error_event_raises_the_mapped_error(stream, no_proxy_env) -> None:
    first = f"data: {json.dumps(STREAM_EVENTS[0])}\n\n"
    typed = first + 'event: error\ndata: {"error": "CUDA OOM", "error_type": "generation"}\n\n'
    with pytest.raises(errors.GenerationError, match="CUDA OOM"):
        stream("async", typed.encode())
    plain = first + "event: error\ndata: upstream went away\n\n"
    with pytest.raises(errors.UnknownError, match="upstream went away") as info:
        stream("sync", plain.encode())
    assert info.value.retryable


# -- the sync client's event loop thread; the scheme registry ------------------------------------------------


def _python(code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


LEFT_OPEN = {
    "generate": "from tgbatch.client import Client; c = Client('sim://'); "
    "print(c.generate('hi', max_new_tokens=2).generated_text)",
    # a stream abandoned after its first event: closed in order at exit, with no error printed
    "stream": "from tgbatch.client import Client; c = Client('sim://'); "
    "print(next(c.generate_stream('hi', max_new_tokens=9)).token.text)",
}


@pytest.mark.parametrize("code", list(LEFT_OPEN.values()), ids=list(LEFT_OPEN))
def test_sync_client_left_open_lets_the_interpreter_exit(code: str) -> None:
    done = _python(code, timeout=20)  # a hang is a TimeoutExpired
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and done.stderr == ""


def test_client_library_loads_the_simulator_only_for_sim_urls() -> None:
    code = (
        "import sys\n"
        "from tgbatch.client import AsyncClient, Client\n"
        "AsyncClient('http://127.0.0.1:9'); Client('http://127.0.0.1:9').close()\n"
        "assert not [m for m in sys.modules if m.startswith('tgbatch.sim')], 'simulator imported'\n"
        "Client('sim://').close()\n"
        "assert 'tgbatch.sim.transport' in sys.modules\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr


def mock_scheme_transport(url: str, *, timeout: Any, cookies: Any) -> Any:
    """A transport factory for the ``mock://`` scheme test: a caller's httpx client behind the seam."""
    from tgbatch.http import HttpxTransport

    def handler(request: httpx.Request) -> httpx.Response:
        status, content_type, body = CANNED[request.url.path]
        return httpx.Response(status, headers={"content-type": content_type}, content=body)

    return HttpxTransport(httpx.AsyncClient(transport=httpx.MockTransport(handler)), "http://mock", timeout=timeout)


@kinds
def test_a_registered_scheme_is_loaded_by_dotted_name(four_calls, monkeypatch: pytest.MonkeyPatch) -> None:
    from tgbatch.http import KNOWN_SCHEMES

    monkeypatch.setitem(KNOWN_SCHEMES, "mock", "tests.test_client_transport:mock_scheme_transport")
    _check_answers(four_calls("mock://anything"))


def _tgbatch_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
    names |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return {name for name in names if name.startswith("tgbatch")}


def test_the_simulator_and_the_client_library_stay_apart() -> None:
    package = ROOT / "tgbatch"
    client_side = [
        *(package / "http").rglob("*.py"),
        *(package / "backends").rglob("*.py"),
        *(package / "client").rglob("*.py"),
    ]
    for path in client_side:
        assert not {m for m in _tgbatch_imports(path) if m.startswith("tgbatch.sim")}, path
    for path in (package / "sim").rglob("*.py"):
        for module in _tgbatch_imports(path):
            assert _sim_may_import(module), f"tgbatch/sim/{path.name} imports {module}"


def _sim_may_import(module: str) -> bool:
    if module.startswith("tgbatch.backends."):
        return module.endswith((".rules", ".models"))  # the protocol's rules, never a client
    return module.startswith(("tgbatch.errors", "tgbatch.types", "tgbatch.http", "tgbatch.sim"))


@pytest.mark.anyio
async def test_credentials_in_the_url_are_basic_auth_and_leave_the_url() -> None:
    with recording_server() as server:
        url = server.url.replace("http://", "http://us%40er:p%3Aw@")
        async with AsyncClient(url, token="ambient") as client:
            await client.generate("hi", max_new_tokens=2)
            assert "us%40er" not in client.base_url
        sync = Client(url)
        sync.info()
        sync.close()
    expected = "Basic " + base64.b64encode(b"us@er:p:w").decode()
    assert [s.headers["authorization"] for s in server.seen] == [expected, expected]
    assert all("@" not in s.request_line for s in server.seen)
