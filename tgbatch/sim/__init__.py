"""A TGI-compatible simulated server: the protocol of text-generation-inference's router with a deterministic
word-level model, a continuous-batching latency model and reproducible fault injection.

- ``create_app(config)``: the Starlette (ASGI) app, for uvicorn or ``httpx.ASGITransport``.
- ``app_from_sim_url("sim://?decode_ms_per_token=2")``: the app for a ``sim://`` URL (query keys are
  ``SimConfig`` fields; a bad one raises ``tgbatch.errors.SpecError``).
- ``serve(config, host, port)``: run it with uvicorn (what ``tgbatch serve`` does).
- ``tgbatch.sim.transport.make_transport``: the in-process ``sim://`` transport, which ``tgbatch.http``'s scheme
  table names, so that the client library imports the simulator only when a ``sim://`` URL is opened.

Names are imported on first use: ``tgbatch serve --help`` needs ``SimConfig`` but not Starlette or uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from tgbatch.sim.config import SimConfig
    from tgbatch.sim.faults import ConnectionDropped
    from tgbatch.sim.run import serve

__all__ = ["ConnectionDropped", "SimConfig", "app_from_sim_url", "create_app", "serve"]


def create_app(config: SimConfig | None = None) -> Starlette:
    """The simulated server's ASGI app. Each app has its own state (semaphore, counters, fault stream)."""
    from tgbatch.sim.app import build_app
    from tgbatch.sim.config import SimConfig

    return build_app(config if config is not None else SimConfig())


def app_from_sim_url(url: str) -> Starlette:
    """The app for ``sim://[?option=value&...]``."""
    from tgbatch.sim.app import build_app
    from tgbatch.sim.config import config_from_sim_url

    return build_app(config_from_sim_url(url))


def __getattr__(name: str) -> Any:
    if name == "SimConfig":
        from tgbatch.sim.config import SimConfig

        return SimConfig
    if name == "ConnectionDropped":
        from tgbatch.sim.faults import ConnectionDropped

        return ConnectionDropped
    if name == "serve":
        from tgbatch.sim.run import serve

        return serve
    raise AttributeError(f"module 'tgbatch.sim' has no attribute {name!r}")
