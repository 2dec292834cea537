"""The output folder: its layout, the per-shard lock, the manifests and ``job.yaml``.

::

    DIR/job.yaml                          the resolved spec (no secrets)
    DIR/manifest.json                     an unsharded run's manifest (``manifest-<I>of<N>.json`` with --shard)
DIR/commits.jsonl                     its commits since it was last written (``commits-<I>of<N>.jsonl``)
    DIR/data/part-<I>of<N>-<seq>.parquet  committed results
    DIR/errors/part-<I>of<N>-<seq>.parquet rows that failed for good
    DIR/retired/                          error shards set aside by --retry-failed
    DIR/.lock-<I>of<N>                    held while a run writes that shard's files

Several ``--shard I/N`` processes share a folder: each writes only files carrying its own ``<I>of<N>`` tag.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tgbatch.errors import OutputError, ResumeError
from tgbatch.output.atomic import fsync_dir, write_atomic
from tgbatch.output.commitlog import read_state
from tgbatch.output.shards import CommittedFile

SHARD_FILE = re.compile(r"^part-(?P<tag>\d+of\d+)-(?P<seq>\d+)\.parquet$")
MANIFEST_FILE = re.compile(r"^manifest(-\d+of\d+)?\.json$")
KINDS = ("data", "errors")
_OURS = re.compile(
    r"^(data|errors|retired|scores|scores\.json|job\.yaml|(manifest|progress|summary)(-\d+of\d+)?\.json|"
    r"commits(-\d+of\d+)?\.jsonl|\.lock-\d+of\d+|\..*\.tmp)$"
)


class OutputDir:
    """One process's view of the output folder, for shard ``index`` of ``count``."""

    def __init__(self, root: Path, shard: tuple[int, int] = (0, 1)) -> None:
        self.root = root
        self.shard = shard
        self.tag = f"{shard[0]}of{shard[1]}"
        self.manifest_path = root / ("manifest.json" if shard[1] == 1 else f"manifest-{self.tag}.json")
        self._lock_fd: int | None = None

    # -- inspection ------------------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.root.exists()

    def check_is_folder(self) -> None:
        """Refuse an output path that is a file (or a folder that cannot be made), naming it and the fix."""
        if self.root.exists() and not self.root.is_dir():
            raise ResumeError(
                f"output.dir: {str(self.root)!r} is a file, not a folder; choose another --output / output.dir"
            )

    def foreign_entries(self) -> list[str]:
        """Entries that tgbatch did not write (a folder holding them is not a tgbatch output folder)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not _OURS.match(p.name))

    def manifests(self) -> list[tuple[Path, dict[str, Any]]]:
        found: list[tuple[Path, dict[str, Any]]] = []
        if not self.root.is_dir():
            return found
        for path in sorted(self.root.iterdir()):
            if MANIFEST_FILE.match(path.name):
                try:
                    # with the shard's commit log folded in: the commits since the manifest was last written
                    found.append((path, read_state(path, json.loads(path.read_text(encoding="utf-8")))))
                except (OSError, ValueError) as exc:
                    raise ResumeError(f"cannot read {str(path)!r}: {exc}; delete the folder or use --fresh") from exc
        return found

    def committed(self, kind: str, own_only: bool = False) -> list[Path]:
        """Committed shard files of ``kind`` (``data`` or ``errors``), in name order."""
        folder = self.root / kind
        if not folder.is_dir():
            return []
        files = []
        for path in sorted(folder.iterdir()):
            match = SHARD_FILE.match(path.name)
            if match and (not own_only or match["tag"] == self.tag):
                files.append(path)
        return files

    def own_files(self) -> list[CommittedFile]:
        out = []
        for kind in KINDS:
            for path in self.committed(kind, own_only=True):
                out.append(CommittedFile(f"{kind}/{path.name}", shard_rows(path)))
        return out

    def next_seq(self) -> int:
        seqs = [int(SHARD_FILE.match(p.name)["seq"]) for k in KINDS for p in self.committed(k, own_only=True)]  # type: ignore[index]
        return max(seqs, default=-1) + 1

    def shard_path(self, kind: str, seq: int) -> Path:
        return self.root / kind / f"part-{self.tag}-{seq:06d}.parquet"

    # -- changes ---------------------------------------------------------------------------------------------

    def create(self) -> None:
        for kind in KINDS:
            (self.root / kind).mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this shard's lock (released by the kernel even on SIGKILL)."""
        self.check_is_folder()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a parent that is a file, no permission, a read-only disk
            raise OutputError(
                f"output.dir: cannot create {str(self.root)!r}: {exc.strerror or exc}; choose another --output"
            ) from exc
        fd = os.open(self.root / f".lock-{self.tag}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ResumeError(
                    f"another tgbatch run is writing shard {self.tag} of {str(self.root)!r}; wait for it or stop it"
                ) from None
            yield
        finally:
            os.close(fd)

    def discard_temp_files(self) -> list[Path]:
        """Remove this shard's half-written temp files (left by a crash)."""
        removed = []
        for folder in (self.root, *(self.root / k for k in KINDS)):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                name = path.name
                if not name.endswith(".tmp"):
                    continue
                # temp names are ``.{name}.{pid}.{token}.tmp`` (``atomic.temp_path``); an older tgbatch wrote
                # ``.{name}.tmp``
                if name.startswith((f".part-{self.tag}-", f".{self.manifest_path.name}.")):
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    def clear(self) -> None:
        """``--fresh``: delete everything tgbatch wrote here (and nothing else)."""
        for path in self.root.iterdir() if self.root.is_dir() else []:
            if not _OURS.match(path.name) or path.name.startswith(".lock-"):
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        if self.root.is_dir():
            fsync_dir(self.root)

    def retire_errors(self) -> int:
        """``--retry-failed``: move this shard's error files (all of them for an unsharded run) to retired/,
        so their rows are pending again. Returns how many files moved."""
        files = self.committed("errors", own_only=self.shard[1] != 1)
        if not files:
            return 0
        retired = self.root / "retired"
        retired.mkdir(exist_ok=True)
        for path in files:
            os.replace(path, retired / f"errors-{path.name}")
        fsync_dir(retired)
        fsync_dir(self.root / "errors")
        return len(files)

    def write_job_yaml(self, data: dict[str, Any]) -> None:
        text = _dump_yaml(data)
        write_atomic(self.root / "job.yaml", text.encode("utf-8"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_atomic(self.manifest_path, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))


def _dump_yaml(data: dict[str, Any]) -> str:
    """YAML with multi-line strings (the template) as readable ``|`` blocks."""
    import yaml

    class BlockDumper(yaml.SafeDumper):
        pass

    def str_block(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    BlockDumper.add_representer(str, str_block)
    return yaml.dump(data, Dumper=BlockDumper, sort_keys=False, allow_unicode=True, width=100)


def shard_rows(path: Path) -> int:
    """A committed shard's row count, from its Parquet footer (Arrow is imported only when one is read)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError) as exc:
        raise ResumeError(f"committed shard {str(path)!r} is unreadable: {exc}") from exc
