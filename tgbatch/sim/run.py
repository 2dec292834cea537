"""Running the simulator over real HTTP with uvicorn."""

from __future__ import annotations

import logging
import socket

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
    sock: socket.socket | None = None,
) -> None:
    """Serve the simulator until interrupted, on ``sock`` when given (bound by ``bind``), else on host:port."""
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
    server.run(sockets=[sock] if sock is not None else None)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, so a taken port is found before the server says it is serving.
    Raises ``OSError`` (address in use, no such address, no permission)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
