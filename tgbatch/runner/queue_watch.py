"""Reading each server's queue gauge while the job runs (``Backend.queue``: ``tgi_queue_size``,
``vllm:num_requests_waiting``): requests waiting there mean the in-flight count is beyond what the server runs
at once, which its limit acts on (``LatencyLimit.on_queue``).

One task per endpoint, in the pipeline's task group (cancelled with it), about one scrape a second: cheap next
to the requests themselves. A server without the gauge (no ``/metrics``, or a 404) answers ``None``; after
``GIVE_UP`` of those in a row it is not asked again, and its limit follows latency alone. An endpoint that is
ejected or paused is not scraped (its limit is not moving anyway, and it may be down)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio

from tgbatch.errors import TGBatchError
from tgbatch.runner.dispatch import Endpoint, EndpointPool

log = logging.getLogger("tgbatch.dispatch")

#: seconds between two scrapes of one server
POLL_S = 1.0
#: answers without a gauge in a row before a server is no longer scraped
GIVE_UP = 3
#: a scrape that takes longer than this is abandoned (a busy server answers /metrics late; the next one counts)
SCRAPE_TIMEOUT_S = 5.0


async def watch_queues(pool: EndpointPool, *, poll_s: float = POLL_S) -> None:
    """Watch every endpoint's queue until cancelled (returns early once no endpoint has a gauge)."""
    async with anyio.create_task_group() as tg:
        for endpoint in pool.endpoints:
            if endpoint.limit.min_limit < endpoint.limit.max_limit:  # a fixed concurrency has nothing to adapt
                tg.start_soon(watch_queue, endpoint, poll_s)


async def watch_queue(endpoint: Endpoint, poll_s: float = POLL_S, clock: Callable[[], float] = time.monotonic) -> None:
    """Scrape one endpoint's queue gauge every ``poll_s`` and feed it to its limit; returns when the server
    turns out to have no gauge."""
    missing = 0
    while missing < GIVE_UP:
        await anyio.sleep(poll_s)
        if endpoint.ejected or clock() < endpoint.cooldown_until:
            continue
        waiting: int | None = None
        try:
            with anyio.fail_after(SCRAPE_TIMEOUT_S):
                waiting = await endpoint.client.queue()
        except (TGBatchError, TimeoutError) as exc:
            log.debug("%s: queue gauge not read (%s)", endpoint.url, exc)
            continue  # a failed scrape is no evidence either way
        if waiting is None:
            missing += 1
            continue
        missing = 0
        if endpoint.limit.on_queue(waiting, endpoint.in_flight):
            log.debug("%s: %d waiting: limit %d", endpoint.url, waiting, endpoint.limit.limit)
    log.debug("%s: no queue gauge in /metrics: concurrency follows latency alone", endpoint.url)
