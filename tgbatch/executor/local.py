"""One shard in this process, on its own event loop: the endpoint pool opened and closed around the run, and,
when asked, SIGINT/SIGTERM turned into a graceful stop (the first drains, a second cancels)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import signal
import threading
from typing import Any

import anyio

from tgbatch.runner import ProgressSink, RunControl, RunOptions, RunResult, make_pool, read_token, run_job
from tgbatch.runner.plan import Prepared

log = logging.getLogger("tgbatch.job")


def event_loop_options() -> dict[str, Any]:
    """uvloop where it is installed (it comes with uvicorn[standard] on Linux and macOS): the pipeline spends
    much of its time in the event loop, and uvloop's costs about a fifth less CPU per row."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def tune_for_batch() -> None:
    """For a process that exists to run one job: what is loaded by now lives as long as the process, so the
    garbage collector stops scanning it (``gc.freeze``), and a row's garbage, freed by reference counting,
    triggers young-generation collections less often. About 3-5 % less CPU per row; not for a notebook's
    process, whose collector settings are its owner's."""
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


def run_local(
    prepared: Prepared,
    options: RunOptions | None = None,
    *,
    progress: ProgressSink | None = None,
    token: str | None = None,
    handle_signals: bool = False,
) -> RunResult:
    """Run (or resume) the job's shard ``options.shard`` here and wait for it. ``token`` defaults to the
    job's ``endpoint.token_env``. Called where an event loop already runs (a notebook), the run gets a
    thread and a loop of its own."""
    options = options or RunOptions()
    token = token if token is not None else read_token(prepared.job.spec.endpoint)

    def go(signals: bool) -> RunResult:
        return anyio.run(_run, prepared, options, progress, token, signals, backend_options=event_loop_options())

    if not _loop_running():
        return go(handle_signals and threading.current_thread() is threading.main_thread())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tgbatch-run") as pool:
        return pool.submit(go, False).result()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _run(
    prepared: Prepared, options: RunOptions, progress: ProgressSink | None, token: str | None, signals: bool
) -> RunResult:
    control = RunControl()
    result: RunResult | None = None
    error: Exception | None = None
    async with make_pool(prepared.job.spec, token) as pool, anyio.create_task_group() as tg:
        if signals:
            tg.start_soon(_watch_signals, control, options.drain_s)
        try:
            result = await run_job(prepared, pool, options=options, progress=progress, control=control)
        except Exception as exc:  # re-raised below, outside the task group (which would wrap it in a group)
            error = exc
        tg.cancel_scope.cancel()
    if error is not None:
        raise error
    assert result is not None
    return result


async def _watch_signals(control: RunControl, grace: float) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        count = 0
        async for signum in signals:
            count += 1
            name = signal.Signals(signum).name
            if count == 1:
                log.warning(
                    "%s: stopping; in-flight requests get up to %gs to finish (signal again to stop now)", name, grace
                )
                control.request_stop(name)
            else:
                log.warning("%s again: cancelling the requests in flight", name)
                control.request_stop(name, now=True)
