"""Stable hashes of row ids: the shard a row belongs to (``--shard I/N``) and the exact resume keys.

- ``row_hash``/``row_hashes``: a 64-bit blake2b digest of the id. It decides the shard (``hash % N``), so it
  never changes between versions.
- ``row_keys``: a 128-bit blake2b digest of the id, as an ``(n, 2)`` uint64 array (high word, low word). Resume
  and the uniqueness check go by these keys: two different ids share a key with probability about n²/2¹²⁹
  (10⁻²⁵ at ten million rows), so no row is ever skipped because another one was written.
- ``KeySet``: a compact set of such keys, 16 bytes a key in sorted numpy arrays (ten million keys take 160 MB,
  where a set of ten million Python strings takes about a gigabyte), queried a batch at a time.

Python's ``hash()`` is salted per process, so it is never used: these digests are identical on every machine,
Python version and run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

KEY_WORDS = 2  # a key is two uint64 words: (high, low)
_ROW_KEY_PERSON = b"tgbatch-row-key"


def row_hash(row_id: str) -> int:
    """A stable unsigned 64-bit hash of a row id (it decides the row's shard)."""
    return int.from_bytes(hashlib.blake2b(row_id.encode("utf-8"), digest_size=8).digest(), "little")


def row_hashes(row_ids: Sequence[str]) -> np.ndarray:
    """``row_hash`` of each id, as a uint64 array."""
    blake = hashlib.blake2b
    digests = b"".join([blake(rid.encode("utf-8"), digest_size=8).digest() for rid in row_ids])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def row_keys(row_ids: Iterable[str]) -> np.ndarray:
    """The 128-bit resume key of each id: an ``(n, 2)`` uint64 array of (high, low) words."""
    blake = hashlib.blake2b
    person = _ROW_KEY_PERSON
    digests = b"".join([blake(rid.encode("utf-8"), digest_size=16, person=person).digest() for rid in row_ids])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64).reshape(-1, KEY_WORDS)


def empty_keys() -> np.ndarray:
    return np.empty((0, KEY_WORDS), dtype=np.uint64)


def in_shard(row_h: np.ndarray, index: int, count: int) -> np.ndarray:
    """Mask of the rows that belong to shard ``index`` of ``count`` (``row_h``: their ``row_hashes``)."""
    if count == 1:
        return np.ones(len(row_h), dtype=bool)
    return (row_h % np.uint64(count)) == np.uint64(index)


def _as_keys(keys: np.ndarray) -> np.ndarray:
    keys = np.asarray(keys)
    if keys.ndim != 2 or keys.shape[1] != KEY_WORDS:
        raise ValueError(f"keys must be an (n, {KEY_WORDS}) array of uint64 words, not shape {keys.shape}")
    return keys.astype(np.uint64, copy=False)


def _sorted_unique(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort keys by (high, low) and drop repeats; returns the high and low words as two contiguous arrays."""
    order = np.argsort(keys[:, 0])  # one uint64 sort; ties on the high word are rare and handled below
    hi = keys[order, 0]
    lo = keys[order, 1]
    tie = hi[1:] == hi[:-1]
    if tie.any():
        # runs of equal high words (a repeated key, or two keys that share 64 bits): order them by the low word
        idx = np.flatnonzero(np.concatenate([tie, [False]]) | np.concatenate([[False], tie]))
        sub = np.lexsort((lo[idx], hi[idx]))
        hi[idx] = hi[idx][sub]
        lo[idx] = lo[idx][sub]
        repeat = np.concatenate([[False], (hi[1:] == hi[:-1]) & (lo[1:] == lo[:-1])])
        if repeat.any():
            hi = hi[~repeat]
            lo = lo[~repeat]
    return np.ascontiguousarray(hi), np.ascontiguousarray(lo)


def _merge(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Merge two disjoint runs in linear time (plus a binary search per key of ``b``).

    Within a run of equal high words the low words need no order: ``contains`` compares them all."""
    (a_hi, a_lo), (b_hi, b_lo) = a, b
    at = np.searchsorted(a_hi, b_hi) + np.arange(len(b_hi))  # where b's keys land in the merged run
    hi = np.empty(len(a_hi) + len(b_hi), dtype=np.uint64)
    lo = np.empty_like(hi)
    from_a = np.ones(len(hi), dtype=bool)
    from_a[at] = False
    hi[at], lo[at] = b_hi, b_lo
    hi[from_a], lo[from_a] = a_hi, a_lo
    return hi, lo


class KeySet:
    """A compact, append-only set of 128-bit keys (``(n, 2)`` uint64 arrays, see ``row_keys``).

    Keys live in a few sorted runs of two contiguous uint64 arrays (high and low words: 16 bytes a key, no Python
    object per key), merged like a log-structured tree so that adding n keys in batches costs O(n log² n) and
    there are O(log n) runs. Membership is exact: the high word is binary-searched and the low word compared.
    """

    def __init__(self, keys: np.ndarray | None = None) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        if keys is not None and len(keys):
            self._runs.append(_sorted_unique(_as_keys(keys)))

    def __len__(self) -> int:
        return sum(len(hi) for hi, _ in self._runs)

    @property
    def nbytes(self) -> int:
        """Bytes held by the key arrays."""
        return sum(hi.nbytes + lo.nbytes for hi, lo in self._runs)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Mask of the keys already in the set."""
        keys = _as_keys(keys)
        found = np.zeros(len(keys), dtype=bool)
        if not len(keys) or not self._runs:
            return found
        q_hi = np.ascontiguousarray(keys[:, 0])
        q_lo = keys[:, 1]
        order = None
        if len(q_hi) > 1 and not (q_hi[1:] >= q_hi[:-1]).all():
            # binary searches for sorted queries are several times faster (numpy starts from the last hit)
            order = np.argsort(q_hi)
            q_hi, q_lo = q_hi[order], q_lo[order]
        for hi, lo in self._runs:
            pos = np.searchsorted(hi, q_hi)
            at = np.minimum(pos, len(hi) - 1)
            same_hi = hi[at] == q_hi
            match = same_hi & (lo[at] == q_lo)
            # the same high word further on (keys sharing 64 bits, about never): compare the whole run of them
            for j in np.flatnonzero(same_hi & ~match):
                end = np.searchsorted(hi, q_hi[j], side="right")
                match[j] = bool((lo[pos[j] : end] == q_lo[j]).any())
            found |= match
        if order is not None:
            found[order] = found.copy()
        return found

    def add(self, keys: np.ndarray) -> np.ndarray:
        """Add keys. Returns the mask of those that were already there: in the set, or earlier in ``keys``."""
        keys = _as_keys(keys)
        present = self.contains(keys)
        fresh = keys[~present] if present.any() else keys
        if not len(fresh):
            return present
        hi, lo = _sorted_unique(fresh)
        if len(hi) < len(fresh):  # repeats within ``keys`` (rare): mark every occurrence after the first
            first: set[tuple[int, int]] = set()
            for i in np.flatnonzero(~present).tolist():
                key = (int(keys[i, 0]), int(keys[i, 1]))
                present[i] = key in first
                first.add(key)
        # new keys only, so runs never overlap and len() is exact; merge while the newest run is at least as
        # large as the one before it: O(log n) runs
        run = (hi, lo)
        while self._runs and len(self._runs[-1][0]) <= len(run[0]):
            run = _merge(self._runs.pop(), run)
        self._runs.append(run)
        return present
