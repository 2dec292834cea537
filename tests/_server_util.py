"""Helpers for the simulator tests: an in-process client, an SSE parser, and ``tgbatch serve`` subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

from tgbatch.sim import SimConfig, create_app

ROOT = Path(__file__).resolve().parents[1]


@contextlib.asynccontextmanager
async def sim(**config: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` talking to a fresh simulator app in-process."""
    app = create_app(SimConfig(**config))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim", timeout=30) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


#: a prompt and a JSON schema the live-server tests share
PROMPT = "Explain continuous batching in one paragraph"
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
}


def sim_state(client: httpx.AsyncClient) -> Any:
    """The ``SimServer`` behind an in-process client (semaphore, latency, metrics)."""
    return client.app.state.sim  # type: ignore[attr-defined]


def body(inputs: str = "The quick brown fox", **parameters: Any) -> dict[str, Any]:
    return {"inputs": inputs, "parameters": parameters}


def sse_events(text: str) -> list[Any]:
    """Split an SSE body into frames: the parsed JSON of ``data:`` frames, ``":"`` for comment frames."""
    out: list[Any] = []
    assert text.endswith("\n\n") or not text, f"SSE body must end with a blank line: {text[-40:]!r}"
    for frame in text.split("\n\n"):
        if not frame:
            continue
        if frame.startswith(":"):
            out.append(":")
            continue
        assert frame.startswith("data: "), frame
        assert "\n" not in frame, frame
        out.append(json.loads(frame[len("data: ") :]))
    return out


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tgbatch", "serve", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``tgbatch serve`` on a loopback port."""

    def __init__(self, *flags: str) -> None:
        self.flags = flags
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LiveServer:
        cmd = cli_command("--host", "127.0.0.1", "--port", str(self.port), *self.flags)
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return self

    def wait_ready(self, deadline_s: float = 30.0) -> LiveServer:
        assert self.proc is not None
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                raise RuntimeError(f"tgbatch serve exited with {self.proc.returncode}: {err.decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling interval of a bounded readiness wait, not synchronisation
        raise TimeoutError(f"tgbatch serve on {self.url} not ready after {deadline_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()


@contextlib.contextmanager
def live_servers(*flag_sets: tuple[str, ...]) -> Iterator[list[LiveServer]]:
    """Start several servers at once (their start-up overlaps) and stop them all afterwards."""
    servers = [LiveServer(*flags) for flags in flag_sets]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()
