"""The storage seam under an output folder: a local folder, or an object store reached through fsspec.

The output code names files by their path inside the output folder (``data/part-0of1-000000.parquet``,
``manifest.json``) and does its I/O here. A local folder keeps the temp file + fsync + rename of
``atomic.py`` and the kernel's ``flock`` as the shard lock. An object store has no rename: a file becomes
visible by one PUT of the complete object, so a reader sees the whole file or none of it, and the shard lock is
a lease object made by a conditional create (``If-None-Match: *``), renewed while the run lives and taken over
once it has expired (or its process is gone from this host)."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tgbatch.errors import OutputError, ResumeError
from tgbatch.job.location import REMOTE_SCHEMES, Location, is_remote, url_scheme
from tgbatch.output.atomic import commit_table, fsync_dir, table_row_group, write_atomic

if TYPE_CHECKING:
    import pyarrow as pa

    from tgbatch.output.lease import Lease


class LocalStore:
    """A local folder: today's crash-safe temp + fsync + rename, and ``flock`` as the shard lock."""

    remote = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self, rel: str = "") -> str:
        return str(self.root / rel) if rel else str(self.root)

    def exists(self) -> bool:
        return self.root.exists()

    def is_file(self) -> bool:
        return self.root.exists() and not self.root.is_dir()

    def is_dir(self, rel: str = "") -> bool:
        return (self.root / rel).is_dir()

    def names(self, rel: str = "") -> list[str]:
        """The names in the folder ``rel`` (files and sub-folders), sorted; ``[]`` when it does not exist."""
        folder = self.root / rel
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def read_bytes(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def write_bytes(self, rel: str, payload: bytes) -> None:
        write_atomic(self.root / rel, payload)

    def write_table(self, rel: str, table: pa.Table) -> None:
        commit_table(table, self.root / rel)

    def read_table(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        """A committed Parquet file, whole (or ``columns`` of it), owning its memory."""
        import pyarrow.parquet as pq

        return pq.read_table(self.root / rel, columns=columns)

    def read_schema(self, rel: str) -> pa.Schema:
        import pyarrow.parquet as pq

        return pq.read_schema(self.root / rel)

    @contextlib.contextmanager
    def open_input(self, rel: str) -> Iterator[Any]:
        """A source pyarrow reads Parquet from."""
        import pyarrow as pa

        with pa.memory_map(str(self.root / rel)) as source:
            yield source

    def delete(self, rel: str) -> None:
        path = self.root / rel
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def move(self, rel: str, to: str) -> None:
        os.replace(self.root / rel, self.root / to)

    def makedirs(self, rel: str = "") -> None:
        (self.root / rel).mkdir(parents=True, exist_ok=True)

    def sync(self, rel: str = "") -> None:
        """Make the renames and deletions in folder ``rel`` durable."""
        if (self.root / rel).is_dir():
            fsync_dir(self.root / rel)

    @contextlib.contextmanager
    def lock(self, name: str, what: str) -> Iterator[None]:
        """Hold the lock file ``name`` (released by the kernel even on SIGKILL)."""
        fd = os.open(self.root / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ResumeError(f"another tgbatch run is writing {what}; wait for it or stop it") from None
            yield
        finally:
            os.close(fd)


class ObjectStore:
    """An fsspec filesystem under ``url`` (``s3://bucket/prefix``): one PUT per file, listings by prefix.

    Credentials and endpoint come from the store's standard environment (for S3: ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``), read by its fsspec driver."""

    remote = True

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.scheme = url_scheme(url) or ""
        try:
            import fsspec

            # listings are never cached: other processes (the other shards, a run being watched) write here
            self.fs, self.base = fsspec.core.url_to_fs(self.url, use_listings_cache=False)
        except ImportError as exc:
            package = REMOTE_SCHEMES.get(self.scheme, "fsspec")
            raise OutputError(
                f"{self.url!r}: reading and writing {self.scheme}:// needs the {package} package; install it "
                "with: pip install 'tgbatch[s3]'" + ("" if package == "s3fs" else f" {package}")
            ) from exc
        self.base = self.base.rstrip("/")
        #: the lease this store's writes are made under (``lock``), checked before each write but its own
        self._lease: Lease | None = None

    def path(self, rel: str = "") -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def describe(self, rel: str = "") -> str:
        return f"{self.url}/{rel}" if rel else self.url

    def exists(self) -> bool:
        return bool(self.names())

    def is_file(self) -> bool:
        return bool(self.fs.isfile(self.base))

    def is_dir(self, rel: str = "") -> bool:
        return bool(self.names(rel))

    def names(self, rel: str = "") -> list[str]:
        prefix = self.path(rel)
        try:
            entries = self.fs.ls(prefix, detail=False, refresh=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        names = sorted({str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries if str(e).rstrip("/") != prefix})
        return names

    def read_bytes(self, rel: str) -> bytes:
        return bytes(self.fs.cat_file(self.path(rel)))

    def write_bytes(self, rel: str, payload: bytes, **conditions: Any) -> None:
        if self._lease is not None and rel != self._lease.name:
            self._lease.check()
        self.fs.pipe_file(self.path(rel), payload, **conditions)

    def write_table(self, rel: str, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(table, buffer, row_group_size=table_row_group(table), compression="zstd")
        self.write_bytes(rel, buffer.getvalue())

    def read_table(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        """A committed Parquet object, whole (or ``columns`` of it): one GET."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pq.read_table(pa.BufferReader(self.read_bytes(rel)), columns=columns)

    def read_schema(self, rel: str) -> pa.Schema:
        return self.read_table(rel).schema

    @contextlib.contextmanager
    def open_input(self, rel: str) -> Iterator[Any]:
        import pyarrow as pa

        # one GET of the whole object: committed shards are small, and a footer-first ranged read costs more
        # round trips than it saves
        yield pa.BufferReader(self.read_bytes(rel))

    def delete(self, rel: str) -> None:
        target = self.path(rel)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(target, recursive=self.fs.isdir(target))

    def move(self, rel: str, to: str) -> None:
        # no rename: copy, then delete; a crash between them leaves a harmless copy under ``to``
        self.fs.copy(self.path(rel), self.path(to))
        self.fs.rm_file(self.path(rel))

    def makedirs(self, rel: str = "") -> None:
        """Object stores have no folders: nothing to make."""

    def sync(self, rel: str = "") -> None:
        """Each PUT is durable when it returns."""

    @contextlib.contextmanager
    def lock(self, name: str, what: str) -> Iterator[None]:
        from tgbatch.output.lease import Lease

        lease = Lease(self, name, what)
        with lease.held():
            self._lease = lease
            try:
                yield
            finally:
                self._lease = None


Store = LocalStore | ObjectStore
__all__ = ["LocalStore", "Location", "ObjectStore", "Store", "open_store"]


def open_store(root: Location) -> Store:
    """The store of an output folder: a local folder, or an object store for a remote URL."""
    if is_remote(root):
        return ObjectStore(str(root))
    return LocalStore(Path(root))
