"""Running the simulator over real HTTP with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from tgbatch.sim.app import build_app
from tgbatch.sim.config import SimConfig
from tgbatch.sim.faults import ConnectionDropped


class _HideDrops(logging.Filter):
    """A simulated drop is an exception by design (it is how an ASGI app makes uvicorn cut a connection);
    uvicorn would log each one as an application error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, ConnectionDropped):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


def serve(
    config: SimConfig,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    log_level: str = "warning",
    access_log: bool = False,
) -> None:
    """Serve the simulator until interrupted."""
    app = build_app(config)
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        lifespan="off",
        # SSE streams may idle for keepalive_s between events; connections stay open across requests
        timeout_keep_alive=max(5, int(config.keepalive_s) + 5),
    )
    server = uvicorn.Server(uv_config)
    # uvicorn configures its loggers when the Config is built; the filter goes on after that
    logging.getLogger("uvicorn.error").addFilter(_HideDrops())
    server.run()
