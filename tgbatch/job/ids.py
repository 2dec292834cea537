"""Stable 64-bit hashes of row ids: the shard a row belongs to (``--shard I/N``) and the compact resume keys.

Python's ``hash()`` is salted per process, so it is never used: these are blake2b digests, identical on every
machine, Python version and run.
"""

from __future__ import annotations

import hashlib

import numpy as np

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def row_hash(row_id: str) -> int:
    """A stable unsigned 64-bit hash of a row id."""
    return int.from_bytes(hashlib.blake2b(row_id.encode("utf-8"), digest_size=8).digest(), "little")


def row_hashes(row_ids: list[str]) -> np.ndarray:
    """``row_hash`` of each id, as a uint64 array."""
    out = np.empty(len(row_ids), dtype=np.uint64)
    blake = hashlib.blake2b
    for i, rid in enumerate(row_ids):
        out[i] = int.from_bytes(blake(rid.encode("utf-8"), digest_size=8).digest(), "little")
    return out


def key_hashes(row_h: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """The resume key of each (row, sample): splitmix64 of the row hash and the sample index (vectorised)."""
    with np.errstate(over="ignore"):
        z = row_h.astype(np.uint64) + (samples.astype(np.uint64) + np.uint64(1)) * np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def in_shard(row_h: np.ndarray, index: int, count: int) -> np.ndarray:
    """Mask of the rows that belong to shard ``index`` of ``count``."""
    if count == 1:
        return np.ones(len(row_h), dtype=bool)
    return (row_h % np.uint64(count)) == np.uint64(index)


class KeySet:
    """A compact, append-only set of uint64 keys (8 bytes a key, not a Python object each): sorted runs merged
    like a log-structured tree, so adding n keys costs O(n log n) and memory stays ~8 bytes per key."""

    def __init__(self, keys: np.ndarray | None = None) -> None:
        self._runs: list[np.ndarray] = []
        if keys is not None and len(keys):
            self._runs.append(np.unique(keys.astype(np.uint64)))

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Mask of the keys already in the set."""
        found = np.zeros(len(keys), dtype=bool)
        for run in self._runs:
            pos = np.searchsorted(run, keys)
            pos[pos == len(run)] = 0
            found |= run[pos] == keys
        return found

    def add(self, keys: np.ndarray) -> None:
        """Add keys (duplicates are fine)."""
        if not len(keys):
            return
        run = np.unique(keys.astype(np.uint64))
        # merge while the newest run is at least as large as the one before it: O(log n) runs
        while self._runs and len(self._runs[-1]) <= len(run):
            run = np.union1d(self._runs.pop(), run)
        self._runs.append(run)
