"""The in-process ``sim://`` transport: the simulator's ASGI app behind tgbatch's transport seam.

``tgbatch.http``'s scheme table names ``make_transport`` for ``sim``, so the client library imports the simulator
only when a ``sim://`` URL is opened. Sync and async clients both use it (the sync one on its private loop).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import httpx

from tgbatch.http.base import Timeout, Transport
from tgbatch.http.httpx import HttpxTransport
from tgbatch.sim import app_from_sim_url

#: the origin requests to the in-process app are addressed to (the app ignores it)
SIM_BASE_URL = "http://sim"


class SimASGITransport(httpx.ASGITransport):
    """The app, in-process, failing as a server would: a failing app looks like a dropped connection, and the
    read timeout is enforced (``ASGITransport`` ignores timeouts, and a stalled simulated server must still time
    out). The errors raised are httpx's, which the adapter translates like any transport's."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        read_timeout = request.extensions.get("timeout", {}).get("read")
        try:
            with anyio.fail_after(read_timeout):
                return await super().handle_async_request(request)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("simulated server did not answer in time", request=request) from exc
        except httpx.HTTPError:
            raise
        except Exception as exc:  # the app raised: to a client that is a closed connection
            raise httpx.RemoteProtocolError(
                f"Server disconnected without sending a complete response ({type(exc).__name__})",
                request=request,
            ) from exc


def make_transport(url: str, *, timeout: Timeout, cookies: Mapping[str, str] | None = None) -> Transport:
    """The transport for ``sim://[?option=value&...]``: a fresh simulated server. A bad option raises
    ``SpecError`` now, not at the first request."""
    app: Any = app_from_sim_url(url)
    client = httpx.AsyncClient(transport=SimASGITransport(app=app), cookies=dict(cookies) if cookies else None)
    return HttpxTransport(client, SIM_BASE_URL, timeout=timeout, owned=True)
