"""Backends: how one kind of server is asked for a generation. The runner sees only this seam.

A backend turns a neutral ``GenerationRequest`` into its wire protocol and the answer into a
``GenerationResult``; its errors are the one error tree's (``tgbatch.errors``), whose class flags
(``retryable``, ``overload``, ``fatal``) are all the runner reads. ``tgi`` speaks TGI's ``/generate``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from tgbatch.types import Capacity, GenerationRequest, GenerationResult


@runtime_checkable
class Backend(Protocol):
    """One server (one URL), ready to take requests."""

    #: the server's URL without credentials: what the output's ``endpoint`` column and the logs show
    url: str

    async def request(self, request: GenerationRequest) -> GenerationResult:
        """Send one request; raise a ``tgbatch.errors.ServerError`` subclass when it fails."""
        ...

    async def capacity(self) -> Capacity:
        """What the server reports about itself and its limits."""
        ...

    def check_limits(self, capacity: Capacity) -> None:
        """Raise ``tgbatch.errors.ValidationError`` when the job's parameters break the server's limits."""
        ...

    async def queue(self) -> int | None:
        """Requests waiting in the server's queue (its ``/metrics`` gauge, e.g. ``tgi_queue_size``,
        ``vllm:num_requests_waiting``); ``None`` when the server does not say. Servers that queue instead of
        refusing are throttled on it."""
        ...

    async def health(self) -> bool:
        """``True`` when the server says it can take requests, ``False`` when it says it cannot."""
        ...

    async def aclose(self) -> None: ...


__all__ = ["Backend"]
