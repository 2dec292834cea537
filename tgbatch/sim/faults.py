"""Fault injection: which request gets which fault, reproducibly from ``fault_seed``.

Each arriving generation request takes the next number ``n`` of a counter; blake2b of ``(fault_seed, n)`` gives
the draws that decide its fault, so a sequence of requests meets the same faults in every run and process.
The exclusive faults (unavailable, overloaded, error, drop) partition one uniform draw, so each occurs at
exactly its rate; a stall is drawn independently and only delays a response. Faults never touch what a
successful response contains: generation does not see these draws. The rate limit and the loading window
depend on wall time, as real ones do.
"""

from __future__ import annotations

import enum
import hashlib
import math
import time
from dataclasses import dataclass

from tgbatch.sim.config import SimConfig

_SCALE = float(1 << 64)


class ConnectionDropped(Exception):
    """Raised by the app to cut a connection: in-process the transport sees a dropped connection, and uvicorn
    closes the socket because the response was already started."""


class Fault(enum.Enum):
    NONE = "none"
    UNAVAILABLE = "unavailable"
    OVERLOADED = "overloaded"
    ERROR = "error"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Decision:
    fault: Fault
    stall: bool
    #: a uniform u64 for the fault's details (which error, after how many tokens a stream breaks)
    detail: int

    def pick(self, n: int) -> int:
        """A number in ``range(n)`` chosen by this decision."""
        return self.detail % n if n > 0 else 0


NO_FAULT = Decision(Fault.NONE, False, 0)

#: what a reverse proxy in front of the model says when the backend is gone (not TGI's JSON)
PROXY_503 = (
    (
        "text/html",
        "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
        "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n",
    ),
    ("text/plain", "upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
)
#: the message of a simulated shard failure (TGI wraps it as "Request failed during generation: ...")
SHARD_ERROR = "Server error: CUDA out of memory. Tried to allocate 2.00 GiB"
RATE_LIMIT_MESSAGE = (
    "Rate limit reached. You reached free usage limit (reset hourly). "
    "Please subscribe to a plan at https://huggingface.co/pricing to use the API at this rate"
)


class FaultInjector:
    def __init__(self, config: SimConfig, started: float | None = None) -> None:
        self.config = config
        self.arrivals = 0
        self.started = time.monotonic() if started is None else started
        self._bounds = self._partition(config)
        self._any = config.stall_rate > 0 or self._bounds[-1][1] > 0
        # token bucket for rate_limit: a burst of up to one second's worth, refilled continuously
        self._tokens = max(config.rate_limit or 0.0, 1.0)
        self._refilled = self.started

    @staticmethod
    def _partition(config: SimConfig) -> list[tuple[Fault, float]]:
        bounds: list[tuple[Fault, float]] = []
        edge = 0.0
        for fault, rate in (
            (Fault.UNAVAILABLE, config.unavailable_rate),
            (Fault.OVERLOADED, config.overload_rate),
            (Fault.ERROR, config.error_rate),
            (Fault.DROP, config.drop_rate),
        ):
            edge += rate
            bounds.append((fault, edge))
        return bounds

    def decide(self) -> Decision:
        """The fault of the next arriving request."""
        n = self.arrivals
        self.arrivals += 1
        if not self._any:
            return NO_FAULT
        digest = hashlib.blake2b(f"{self.config.fault_seed}:{n}".encode(), digest_size=24).digest()
        u_fault = int.from_bytes(digest[:8], "big") / _SCALE
        u_stall = int.from_bytes(digest[8:16], "big") / _SCALE
        fault = Fault.NONE
        for candidate, edge in self._bounds:
            if u_fault < edge:
                fault = candidate
                break
        return Decision(fault, u_stall < self.config.stall_rate, int.from_bytes(digest[16:], "big"))

    def rate_limited(self, now: float | None = None) -> float | None:
        """``None`` if the request is within the rate limit, else the seconds until it would be."""
        rate = self.config.rate_limit
        if rate is None:
            return None
        now = time.monotonic() if now is None else now
        self._tokens = min(max(rate, 1.0), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / rate

    def loading_remaining(self, now: float | None = None) -> float:
        """Seconds until the simulated model has finished loading (0 when loaded)."""
        if self.config.loading_s <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        return max(0.0, self.started + self.config.loading_s - now)


def retry_after_header(seconds: float) -> str:
    # Retry-After takes whole seconds; rounding down would invite a retry that is refused again
    return str(max(1, math.ceil(seconds)))
