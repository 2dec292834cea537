"""Headers, URLs, /info, /health and transports."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from tgbatch import errors
from tgbatch.client import DEFAULT_TIMEOUT, AsyncClient, Client, InferenceAPIAsyncClient, InferenceAPIClient
from tgbatch.http import AiohttpTransport

OK = {"generated_text": "ok"}


def _recorder():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[OK] if request.url.path.startswith("/models/") else OK)

    return handler, seen


@pytest.mark.parametrize(
    ("kwargs", "expected", "absent"),
    [
        ({"token": "hf_secret"}, {"authorization": "Bearer hf_secret"}, ["x-use-cache", "x-wait-for-model"]),
        ({"use_cache": False}, {"x-use-cache": "false"}, ["authorization"]),
        ({"use_cache": True}, {"x-use-cache": "true"}, []),
        ({"wait_for_model": True}, {"x-wait-for-model": "true"}, []),
        ({"headers": {"X-Custom": "1"}}, {"x-custom": "1", "content-type": "application/json"}, []),
        ({"headers": {"Authorization": "Bearer mine"}, "token": "other"}, {"authorization": "Bearer mine"}, []),
    ],
)
def test_headers_sync_and_async(kwargs, expected, absent) -> None:
    handler, seen = _recorder()
    Client("http://tgi", http_client=httpx.Client(transport=httpx.MockTransport(handler)), **kwargs).generate("x")

    async def main() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        await AsyncClient("http://tgi", http_client=http, **kwargs).generate("x")

    anyio.run(main)
    assert len(seen) == 2
    for request in seen:
        for key, value in expected.items():
            assert request.headers[key] == value
        for key in absent:
            assert key not in request.headers
        assert request.headers["user-agent"].startswith("tgbatch/")


def test_token_is_not_in_repr() -> None:
    client = Client("http://tgi", token="hf_secret")
    assert "hf_secret" not in repr(client) and "hf_secret" not in repr(client._config)
    client.close()


def test_base_url_trailing_slash_and_path_prefix() -> None:
    handler, seen = _recorder()
    http = httpx.Client(transport=httpx.MockTransport(handler))
    Client("https://x.endpoints.huggingface.cloud/", http_client=http).generate("x")
    Client("http://host/prefix/", http_client=http).generate("x")
    assert str(seen[0].url) == "https://x.endpoints.huggingface.cloud/generate"
    assert str(seen[1].url) == "http://host/prefix/generate"


def test_inference_api_client_uses_compat_route_and_list_body(monkeypatch: pytest.MonkeyPatch) -> None:
    handler, seen = _recorder()
    client = InferenceAPIClient(
        "bigscience/bloomz", token="hf_x", base_url="http://api", http_client=httpx.Client(transport=httpx.MockTransport(handler))
    )
    assert client.generate("Why is the sky blue?").generated_text == "ok"
    assert str(seen[0].url) == "http://api/models/bigscience/bloomz"
    body = json.loads(seen[0].content)
    assert body["stream"] is False and body["inputs"] == "Why is the sky blue?"
    assert seen[0].headers["authorization"] == "Bearer hf_x"

    monkeypatch.setenv("HF_INFERENCE_ENDPOINT", "http://from-env")
    assert InferenceAPIAsyncClient("gpt2").base_url == "http://from-env/models/gpt2"
    monkeypatch.delenv("HF_INFERENCE_ENDPOINT")
    assert InferenceAPIClient("gpt2").base_url == "https://router.huggingface.co/hf-inference/models/gpt2"


INFO_NEW = {
    "model_id": "meta-llama/Llama-3.1-8B-Instruct",
    "model_sha": "0e9e39f249a16976918f6564b8830bc894c89659",
    "model_pipeline_tag": "text-generation",
    "max_concurrent_requests": 128,
    "max_best_of": 2,
    "max_stop_sequences": 4,
    "max_input_tokens": 8191,
    "max_total_tokens": 8192,
    "validation_workers": 2,
    "max_client_batch_size": 4,
    "router": "text-generation-router",
    "version": "3.3.6-dev0",
    "sha": None,
    "docker_label": None,
}
INFO_OLD = {
    "model_id": "bigscience/bloom-560m",
    "model_sha": None,
    "model_dtype": "torch.float16",
    "model_device_type": "cuda",
    "model_pipeline_tag": "text-generation",
    "max_concurrent_requests": 128,
    "max_best_of": 2,
    "max_stop_sequences": 4,
    "max_input_length": 1024,
    "max_total_tokens": 2048,
    "waiting_served_ratio": 1.2,
    "max_batch_total_tokens": 32000,
    "max_waiting_tokens": 20,
    "validation_workers": 2,
    "version": "1.4.5",
    "sha": None,
    "docker_label": None,
}


@pytest.mark.parametrize("body", [INFO_NEW, INFO_OLD], ids=["current", "pre-2.1"])
def test_info_accepts_old_and_new_field_names(body) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/info" and request.method == "GET"
        return httpx.Response(200, json=body)

    info = Client("http://tgi", http_client=httpx.Client(transport=httpx.MockTransport(handler))).info()
    assert info.model_id == body["model_id"]
    assert info.max_input_tokens == body.get("max_input_tokens", body.get("max_input_length"))
    assert info.max_total_tokens == body["max_total_tokens"]

    from tgbatch.client import Limits

    limits = Limits.from_info(info)
    assert limits.max_best_of == 2 and limits.max_input_tokens == info.max_input_tokens


def test_health() -> None:
    answers = iter(
        [
            httpx.Response(200),
            httpx.Response(503, json={"error": "unhealthy", "error_type": "healthcheck"}),
            httpx.Response(401),
        ]
    )
    client = Client("http://tgi", http_client=httpx.Client(transport=httpx.MockTransport(lambda r: next(answers))))
    assert client.health() is True
    assert client.health() is False
    with pytest.raises(errors.AuthenticationError):
        client.health()


def test_async_info_and_health() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=INFO_NEW) if request.url.path == "/info" else httpx.Response(200)

    async def main() -> tuple[str, bool]:
        async with AsyncClient("http://tgi", http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler))) as c:
            return (await c.info()).model_id, await c.health()

    assert anyio.run(main) == (INFO_NEW["model_id"], True)


def test_default_async_transport_is_aiohttp_with_deliberate_timeouts() -> None:
    async def main() -> None:
        client = AsyncClient("http://127.0.0.1:9")
        transport = client._transport
        assert isinstance(transport, AiohttpTransport)  # not stock httpx's pool (encode/httpx#3215)
        assert transport.limits.max_connections >= 512
        assert client._config.timeout == DEFAULT_TIMEOUT == transport.timeout
        assert DEFAULT_TIMEOUT.read is not None and DEFAULT_TIMEOUT.read > 15  # outlives TGI's keep-alive gap
        await client.aclose()

    anyio.run(main)


def test_every_call_goes_through_a_given_httpx_client() -> None:
    # a caller's client is adapted behind the same seam, and nothing bypasses it
    seen: list[str] = []
    final = {"index": 1, "token": {"id": 1, "text": "ok", "logprob": 0, "special": False}, "generated_text": "ok"}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/generate_stream":
            sse = f"data: {json.dumps(final)}\n\n".encode()
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse)
        return httpx.Response(200, json=INFO_NEW if request.url.path == "/info" else OK)

    async def main() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncClient("http://tgi", http_client=http) as c:
            assert (await c.generate("x")).generated_text == "ok"
            assert [e.generated_text async for e in c.generate_stream("x")] == ["ok"]
            assert (await c.info()).model_id == INFO_NEW["model_id"] and await c.health()
        with pytest.raises(TypeError, match="block the event loop"):
            AsyncClient("http://tgi", http_client=httpx.Client())  # type: ignore[arg-type]

    anyio.run(main)
    assert seen == ["POST /generate", "POST /generate_stream", "GET /info", "GET /health"]


def test_env_proxy_is_read_once_and_honours_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    from tgbatch.http import env_proxy

    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert env_proxy("https://x.endpoints.huggingface.cloud") == "http://proxy:3128"
    assert env_proxy("https://internal.example/generate") is None
    assert env_proxy("http://127.0.0.1:8080") is None  # no HTTP_PROXY set


def test_number_timeout_bounds_reads() -> None:
    client = Client("http://tgi", timeout=30)
    assert client._config.timeout.read == 30 and client._config.timeout.connect == 10
    client.close()


def test_caller_http_client_is_not_closed() -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=OK)))
    with Client("http://tgi", http_client=http) as client:
        client.generate("x")
    assert not http.is_closed
    http.close()


def test_connection_refused_on_the_real_transport_is_a_transport_error() -> None:
    # port 9 (discard) on loopback: nothing listens, the connection is refused at once
    async def main() -> None:
        async with AsyncClient("http://127.0.0.1:9", timeout=5) as client:
            await client.generate("x")

    with pytest.raises(errors.TransportError) as info:
        anyio.run(main)
    assert info.value.retryable and info.value.__cause__ is not None
    with pytest.raises(errors.TransportError), Client("http://127.0.0.1:9", timeout=5) as client:
        client.generate("x")
