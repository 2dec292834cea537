"""Seed policies: which ``seed`` each (row, sample) request carries.

- ``none``: no seed is sent; the server draws one and returns it in ``details.seed`` (null under greedy).
- ``fixed``: every row's sample k gets ``value + k``.
- ``per_row``: a u64 derived from ``value``, the row id and the sample index with blake2b: the same on every
  resume, every shard count and every input order.
- ``random``: drawn client-side from the OS's random source, and recorded.
"""

from __future__ import annotations

import hashlib
import secrets

from tgbatch.types import U64_MAX


class SeedPolicy:
    """Computes the seed to send for a (row id, sample)."""

    def __init__(self, policy: str, value: int = 0) -> None:
        if policy not in ("none", "fixed", "per_row", "random"):
            raise ValueError(f"unknown seed policy {policy!r}")
        self.policy = policy
        self.value = value
        self._key = value.to_bytes(8, "little")

    def seed_for(self, row_id: str, sample: int) -> int | None:
        """The seed to send, or ``None`` to let the server choose."""
        if self.policy == "none":
            return None
        if self.policy == "fixed":
            return (self.value + sample) & U64_MAX
        if self.policy == "per_row":
            digest = hashlib.blake2b(
                row_id.encode("utf-8") + b"\x00" + str(sample).encode("ascii"),
                digest_size=8,
                key=self._key,
                person=b"tgbatch-seed",
            ).digest()
            return int.from_bytes(digest, "little")
        return secrets.randbits(64)
