"""``DIR/progress.json`` while a job runs and ``DIR/summary.json`` at the end, and reading them back.

``ProgressFile`` writes a stats snapshot atomically (temp file, fsync, rename, fsync the folder) at most every
``interval_s``, so ``progress.json`` is always complete, valid JSON. With ``--shard I/N`` (N > 1) the files are
``progress-<I>of<N>.json`` and ``summary-<I>of<N>.json``, as the manifests. ``tgbatch status`` reads them back:
``read_stats_files`` finds them, ``is_live`` tells a running job from one that died (its pid on this host, else
how recently the file was updated)."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tgbatch.job.location import Location, is_remote, join
from tgbatch.metrics.live import FORMAT, LiveStats
from tgbatch.output.store import LocalStore, ObjectStore, Store, open_store

log = logging.getLogger("tgbatch.job")

STATS_FILE = re.compile(r"^(?P<kind>progress|summary)(-(?P<tag>\d+of\d+))?\.json$")

DEFAULT_INTERVAL_S = 2.0
DEFAULT_WINDOW_S = 60.0


def stats_file_name(kind: str, shard: tuple[int, int] = (0, 1)) -> str:
    """``progress.json`` / ``summary.json``, or ``progress-<I>of<N>.json`` for shard I of N > 1 (the scheme of
    ``manifest-<I>of<N>.json``)."""
    if kind not in ("progress", "summary"):
        raise ValueError(f"kind must be 'progress' or 'summary', not {kind!r}")
    return f"{kind}.json" if shard[1] == 1 else f"{kind}-{shard[0]}of{shard[1]}.json"



# -- the files --------------------------------------------------------------------------------------------------


class ProgressFile:
    """Writes ``stats`` to ``DIR/progress.json`` at most every ``interval_s`` and ``DIR/summary.json`` at the
    end (per-shard names with N > 1). A failed write is logged, never raised: stats must not stop a job."""

    def __init__(
        self,
        stats: LiveStats,
        root: Location,
        shard: tuple[int, int] = (0, 1),
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.stats = stats
        self.root = root if is_remote(root) else Path(root)
        self._store = open_store(self.root)
        self.name = stats_file_name("progress", shard)
        self.summary_name = stats_file_name("summary", shard)
        self.path = join(self.root, self.name)
        self.summary_path = join(self.root, self.summary_name)
        self.interval_s = interval_s
        self._next = -math.inf
        self._warned_at = -math.inf
        self.writes = 0

    def due(self, now: float | None = None) -> bool:
        return (self.stats.clock() if now is None else now) >= self._next

    def _payload(self) -> bytes:
        snapshot = self.stats.snapshot()
        snapshot["interval_s"] = self.interval_s
        return (json.dumps(snapshot, indent=1, allow_nan=False) + "\n").encode("utf-8")

    def _put(self, name: str, payload: bytes) -> bool:
        try:
            self._store.write_bytes(name, payload)
        except OSError as exc:
            now = self.stats.clock()
            if now - self._warned_at >= 60.0:
                self._warned_at = now
                log.warning("could not write %s: %s (the job goes on)", self._store.describe(name), exc)
            return False
        self.writes += 1
        return True

    def maybe_write(self, now: float | None = None) -> bool:
        """Write ``progress.json`` if ``interval_s`` has passed since the last write (cheap otherwise). Call it
        after each result and on a timer. Blocks for the write (a few ms: fsyncs); see ``maybe_write_async``."""
        now = self.stats.clock() if now is None else now
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return self._put(self.name, self._payload())

    async def maybe_write_async(self, now: float | None = None) -> bool:
        """``maybe_write`` with the file I/O in a worker thread (the snapshot is taken here, on the loop)."""
        now = self.stats.clock() if now is None else now
        if now < self._next:
            return False
        self._next = now + self.interval_s
        payload = self._payload()
        import anyio.to_thread  # the writer's path only: tgbatch status reads these files without anyio

        return await anyio.to_thread.run_sync(self._put, self.name, payload)

    def write_final(self, state: str, reason: str | None = None) -> dict[str, Any]:
        """End of run: freeze the stats in ``state`` and write both ``progress.json`` (so ``status`` sees the
        run is over) and ``summary.json``. Returns the final snapshot (for ``format_summary``)."""
        if self.stats.state == "running":
            self.stats.finish(state, reason)
        payload = self._payload()
        self._put(self.name, payload)
        self._put(self.summary_name, payload)
        return json.loads(payload)

    async def write_final_async(self, state: str, reason: str | None = None) -> dict[str, Any]:
        if self.stats.state == "running":
            self.stats.finish(state, reason)
        payload = self._payload()

        def put_both() -> None:
            self._put(self.name, payload)
            self._put(self.summary_name, payload)

        import anyio.to_thread

        await anyio.to_thread.run_sync(put_both)
        return json.loads(payload)


# -- reading the files back (tgbatch status) --------------------------------------------------------------------


def read_stats_files(root: Location | Store, kind: str = "progress") -> list[tuple[Path, dict[str, Any]]]:
    """Every ``progress*.json`` (or ``summary*.json``) in ``root`` that parses, as (its name as a ``Path``,
    its content); unreadable ones are skipped (a file from another version, or a folder being deleted)."""
    found: list[tuple[Path, dict[str, Any]]] = []
    store = root if isinstance(root, LocalStore | ObjectStore) else open_store(root)
    for name in store.names():
        match = STATS_FILE.match(name)
        if not match or match["kind"] != kind:
            continue
        try:
            data = json.loads(store.read_bytes(name).decode("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("format") == FORMAT:
            found.append((Path(name), data))
    return found


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except OSError:
        return False
    return True


def stale_after_s(snapshot: Mapping[str, Any]) -> float:
    """How old a running job's progress file may get before the job is taken for dead (when its pid cannot be
    checked: another host)."""
    interval = float(snapshot.get("interval_s") or DEFAULT_INTERVAL_S)
    return max(60.0, 30 * interval)


def is_live(
    snapshot: Mapping[str, Any],
    *,
    now: float | None = None,
    hostname: str | None = None,
    alive: Callable[[int], bool] = pid_alive,
) -> bool:
    """Whether the run that wrote ``snapshot`` is still running: its state says so, and its pid is alive when
    it ran on this host; on another host (a shared folder), its last update is recent."""
    if snapshot.get("state") != "running":
        return False
    now = time.time() if now is None else now
    hostname = socket.gethostname() if hostname is None else hostname
    age = now - float(snapshot.get("updated_unix") or 0.0)
    if age > stale_after_s(snapshot):
        return False  # pid reuse, or a run on another host that stopped writing
    if snapshot.get("hostname") == hostname:
        pid = snapshot.get("pid")
        return isinstance(pid, int) and alive(pid)
    return True



