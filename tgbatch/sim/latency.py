"""How long the simulated GPU takes: prefill and decode cost per token, under continuous batching.

Up to ``max_batch_size`` requests are decoded together at full speed (a batched forward pass costs about the
same as a single one); with more in flight, the GPU time is shared, so every token takes ``active / B`` times
longer and throughput stays at what ``B`` concurrent requests get. Waits are taken in short slices so that the
slowdown follows the batch as requests join and leave it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

#: longest single sleep (s): how quickly a waiting request notices that the batch size changed
_SLICE_S = 0.02


class LatencyModel:
    def __init__(self, prefill_ms_per_token: float, decode_ms_per_token: float, max_batch_size: int) -> None:
        self.prefill_s = prefill_ms_per_token / 1000.0
        self.decode_s = decode_ms_per_token / 1000.0
        self.max_batch_size = max_batch_size
        #: requests currently in the batch (past validation, generating)
        self.active = 0

    @property
    def enabled(self) -> bool:
        return self.prefill_s > 0 or self.decode_s > 0

    def slowdown(self) -> float:
        return max(1.0, self.active / self.max_batch_size)

    @contextmanager
    def in_batch(self, n: int = 1) -> Iterator[None]:
        """``n`` sequences (best_of branches) join the batch for the duration."""
        self.active += n
        try:
            yield
        finally:
            self.active -= n

    async def work(self, seconds_at_full_speed: float) -> None:
        """Spend ``seconds_at_full_speed`` of GPU time, stretched by however full the batch is meanwhile."""
        remaining = seconds_at_full_speed
        loop = asyncio.get_running_loop()
        while remaining > 1e-6:
            factor = self.slowdown()
            wall = min(remaining * factor, _SLICE_S)
            start = loop.time()
            await asyncio.sleep(wall)
            # charge the time actually slept (sleeps overshoot) so long generations do not drift
            remaining -= (loop.time() - start) / factor

    def prefill_cost(self, input_tokens: int) -> float:
        return self.prefill_s * input_tokens

    def decode_cost(self, new_tokens: int) -> float:
        return self.decode_s * new_tokens
