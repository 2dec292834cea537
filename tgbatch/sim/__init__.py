"""A TGI-compatible simulated server: the protocol of text-generation-inference's router with a deterministic
word-level model, a continuous-batching latency model and reproducible fault injection.

- ``create_app(config)``: the Starlette (ASGI) app, for uvicorn or ``httpx.ASGITransport``.
- ``app_from_sim_url("sim://?decode_ms_per_token=2")``: the app for a ``sim://`` URL (query keys are
  ``SimConfig`` fields; a bad one raises ``tgbatch.errors.SpecError``).
- ``serve(config, host, port)``: run it with uvicorn (what ``tgbatch serve`` does).
- ``tgbatch.sim.transport.make_transport``: the in-process ``sim://`` transport, which ``tgbatch.http``'s scheme
  table names, so that the client library imports the simulator only when a ``sim://`` URL is opened.
"""

from __future__ import annotations

from starlette.applications import Starlette

from tgbatch.sim.app import build_app
from tgbatch.sim.config import SimConfig, config_from_sim_url
from tgbatch.sim.faults import ConnectionDropped
from tgbatch.sim.serve import serve


def create_app(config: SimConfig | None = None) -> Starlette:
    """The simulated server's ASGI app. Each app has its own state (semaphore, counters, fault stream)."""
    return build_app(config if config is not None else SimConfig())


def app_from_sim_url(url: str) -> Starlette:
    """The app for ``sim://[?option=value&...]``."""
    return build_app(config_from_sim_url(url))


__all__ = ["ConnectionDropped", "SimConfig", "app_from_sim_url", "create_app", "serve"]
