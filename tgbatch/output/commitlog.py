"""The commit log: one shard's commits since its manifest was last written, one JSON line per committed file.

Rewriting the manifest (the whole file list) at every commit made a commit's cost grow with the commits before
it: 85 shards/s over the first thousand of 6,000, 25 over the last. A commit now appends its files' lines to
``commits.jsonl`` (``commits-<I>of<N>.jsonl`` with --shard), in one ``write`` on an ``O_APPEND`` descriptor,
then fsyncs it; the manifest is rewritten (*compacted*: the log's files folded in, then the log emptied) at the
start and end of a run, and when the log has grown as long as the manifest's own list, so the cost of a commit
is constant on average and a reader never replays more than the manifest already holds.

Crash safety is the manifest's ("data before manifest"): a file is appended to the log only after its rename
and its folder's fsync, so every line names a complete file. A crash mid-append leaves a torn last line (no
newline, or not JSON): it is ignored, and the file it named, if on disk, is treated like a file whose line was
never written, which the committed files on disk already cover (resume and ``tgbatch status`` count the files
on disk, reading a footer where no manifest or log line gives its rows). A crash between a compaction's manifest
write and the log's truncation leaves files in both: they are merged by name.

An object store has no append: there a commit rewrites the manifest (one PUT of the whole list), as before the
log, so its cost grows with the shard count (fewer, larger shards keep it small).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tgbatch.output.atomic import fsync_dir
from tgbatch.output.shards import CommittedFile
from tgbatch.output.store import LocalStore, Store

#: a compaction is due once the log holds this many lines and at least as many as the manifest lists
MIN_COMPACT = 1000


def log_name(manifest_name: str) -> str:
    """``manifest.json`` → ``commits.jsonl``, ``manifest-1of4.json`` → ``commits-1of4.jsonl``."""
    tag = manifest_name.removeprefix("manifest").removesuffix(".json")
    return f"commits{tag}.jsonl"


def _local_log(store: Store, manifest_name: str) -> Path | None:
    """Where a local folder keeps the shard's log; ``None`` on an object store (no log there)."""
    return Path(store.root) / log_name(manifest_name) if isinstance(store, LocalStore) else None


def read_log(path: Path) -> list[dict[str, Any]]:
    """The complete records of the log at ``path`` (none when it is absent); a torn line is left out."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    records = []
    for line in data.split(b"\n")[:-1]:  # the part after the last newline is a torn append, or nothing
        try:
            record = json.loads(line)
        except ValueError:
            continue  # not a record (only a torn last line can be that; ``CommitLog`` never appends after one)
        if isinstance(record, dict) and isinstance(record.get("file"), str) and isinstance(record.get("rows"), int):
            records.append(record)
    return records


def fold(manifest: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """``manifest`` with the log's ``records`` merged into its file list (by name) and its row counts."""
    if not records:
        return manifest
    files = {entry["file"]: entry for entry in manifest.get("files") or [] if "file" in entry}
    for record in records:
        files[record["file"]] = {k: record[k] for k in ("file", "rows", "tokens") if k in record}
    entries = list(files.values())
    return {
        **manifest,
        "rows_written": sum(int(e["rows"]) for e in entries if e["file"].startswith("data/")),
        "rows_failed": sum(int(e["rows"]) for e in entries if e["file"].startswith("errors/")),
        "files": entries,
    }


def read_state(store: Store, manifest_name: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """A shard's state: its manifest as read from ``manifest_name``, with its commit log folded in."""
    path = _local_log(store, manifest_name)
    return manifest if path is None else fold(manifest, read_log(path))


class CommitLog:
    """The append side of one shard's log, held by the run that owns the shard (under its lock)."""

    def __init__(self, store: Store, manifest_name: str) -> None:
        self.path = _local_log(store, manifest_name)
        self.records = 0  # lines appended since the last compaction
        self._fd: int | None = None

    def append(self, files: list[CommittedFile]) -> None:
        """Record ``files`` (already renamed into place, their folder fsynced) as committed, durably."""
        if not files:
            return
        if self.path is None:  # an object store: the manifest written next (``due``) records them
            self.records += len(files)
            return
        payload = "".join(json.dumps(f.to_dict(), separators=(",", ":")) + "\n" for f in files).encode("utf-8")
        if self._fd is None:
            self._fd = self._open()
        written = os.write(self._fd, payload)
        if written != len(payload):  # a full disk part-way: what went in is a torn line, ignored when read
            raise OSError(28, "short write to the commit log", str(self.path))
        os.fsync(self._fd)
        self.records += len(files)

    def _open(self) -> int:
        assert self.path is not None
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            # a torn last line (compaction at the start of a run removes it first; this is the safety net):
            # appending after it would glue the next record to it, and both would be lost
            tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
            os.ftruncate(fd, size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0)
            os.fsync(fd)
        if created:
            fsync_dir(self.path.parent)
        return fd

    def due(self, total: int) -> bool:
        """Whether to compact, ``total`` files committed in all: once the log holds as many as the manifest (on an
        object store: at every commit, the manifest being the only record)."""
        if self.path is None:
            return self.records > 0
        return self.records >= max(MIN_COMPACT, total - self.records)

    def clear(self) -> None:
        """Empty the log, after its records went into a manifest written in full (call it only then)."""
        self.close()
        if self.path is not None and self.path.exists():
            self.path.unlink()
            fsync_dir(self.path.parent)
        self.records = 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
