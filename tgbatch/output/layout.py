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
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tgbatch.errors import OutputError, ResumeError
from tgbatch.job.location import Location, join
from tgbatch.output.commitlog import read_state
from tgbatch.output.store import Store, open_store

if TYPE_CHECKING:
    import pyarrow as pa

SHARD_FILE = re.compile(r"^part-(?P<tag>\d+of\d+)-(?P<seq>\d+)\.parquet$")
MANIFEST_FILE = re.compile(r"^manifest(-\d+of\d+)?\.json$")
KINDS = ("data", "errors")
_OURS = re.compile(
    r"^(data|errors|retired|scores|scores\.json|job\.yaml|(manifest|progress|summary)(-\d+of\d+)?\.json|"
    r"commits(-\d+of\d+)?\.jsonl|\.lock-\d+of\d+|\..*\.tmp)$"
)


class OutputDir:
    """One process's view of the output folder, for shard ``index`` of ``count``: a local folder or an object
    store (``root`` an fsspec URL), all I/O going through its ``store``."""

    def __init__(self, root: Location, shard: tuple[int, int] = (0, 1)) -> None:
        self.root = root
        self.store = open_store(root)
        self.shard = shard
        self.tag = f"{shard[0]}of{shard[1]}"
        self.manifest_name = "manifest.json" if shard[1] == 1 else f"manifest-{self.tag}.json"
        self.manifest_path = join(root, self.manifest_name)

    def describe(self, rel: str = "") -> str:
        return self.store.describe(rel)

    # -- inspection ------------------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.store.exists()

    def check_is_folder(self) -> None:
        """Refuse an output path that is a file (or a folder that cannot be made), naming it and the fix."""
        if self.store.is_file():
            raise ResumeError(
                f"output.dir: {self.describe()!r} is a file, not a folder; choose another --output / output.dir"
            )

    def foreign_entries(self) -> list[str]:
        """Entries that tgbatch did not write (a folder holding them is not a tgbatch output folder)."""
        return [name for name in self.store.names() if not _OURS.match(name)]

    def manifests(self) -> list[tuple[Path, dict[str, Any]]]:
        """Every shard's manifest, as (its name as a ``Path``, its content)."""
        found: list[tuple[Path, dict[str, Any]]] = []
        for name in self.store.names():
            if MANIFEST_FILE.match(name):
                try:
                    # with the shard's commit log folded in: the commits since the manifest was last written
                    manifest = json.loads(self.store.read_bytes(name).decode("utf-8"))
                    found.append((Path(name), read_state(self.store, name, manifest)))
                except (OSError, ValueError) as exc:
                    raise ResumeError(
                        f"cannot read {self.describe(name)!r}: {exc}; delete the folder or use --fresh"
                    ) from exc
        return found

    def committed_names(self, kind: str, own_only: bool = False) -> list[str]:
        """Committed shard files of ``kind`` (``data`` or ``errors``) as ``kind/part-...``, in name order."""
        files = []
        for name in self.store.names(kind):
            match = SHARD_FILE.match(name)
            if match and (not own_only or match["tag"] == self.tag):
                files.append(f"{kind}/{name}")
        return files

    def next_seq(self) -> int:
        names = [n.rpartition("/")[2] for k in KINDS for n in self.committed_names(k, own_only=True)]
        return max((int(SHARD_FILE.match(n)["seq"]) for n in names), default=-1) + 1  # type: ignore[index]

    def shard_name(self, kind: str, seq: int) -> str:
        return f"{kind}/part-{self.tag}-{seq:06d}.parquet"

    def shard_path(self, kind: str, seq: int) -> Location:
        return join(self.root, self.shard_name(kind, seq))

    # -- changes ---------------------------------------------------------------------------------------------

    def create(self) -> None:
        for kind in KINDS:
            self.store.makedirs(kind)

    def commit_table(self, kind: str, seq: int, table: pa.Table) -> str:
        """Commit ``table`` as this shard's file ``seq`` of ``kind`` (whole or not at all); its name."""
        name = self.shard_name(kind, seq)
        self.store.write_table(name, table)
        return name

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this shard's lock (a local folder's is released by the kernel even on SIGKILL; an object
        store's is a lease, see ``lease.py``)."""
        self.check_is_folder()
        try:
            self.store.makedirs()
        except OSError as exc:  # a parent that is a file, no permission, a read-only disk
            raise OutputError(
                f"output.dir: cannot create {self.describe()!r}: {exc.strerror or exc}; choose another --output"
            ) from exc
        with self.store.lock(f".lock-{self.tag}", f"shard {self.tag} of {self.describe()!r}"):
            yield

    def discard_temp_files(self) -> list[Path]:
        """Remove this shard's half-written temp files (left by a crash; an object store has none)."""
        removed = []
        for folder in ("", *KINDS):
            for name in self.store.names(folder):
                if not name.endswith(".tmp"):
                    continue
                # temp names are ``.{name}.{pid}.{token}.tmp`` (``atomic.temp_path``); an older tgbatch wrote
                # ``.{name}.tmp``
                if name.startswith((f".part-{self.tag}-", f".{self.manifest_name}.")):
                    rel = f"{folder}/{name}" if folder else name
                    self.store.delete(rel)
                    removed.append(Path(rel))
        return removed

    def clear(self) -> None:
        """``--fresh``: delete everything tgbatch wrote here (and nothing else)."""
        for name in self.store.names():
            if not _OURS.match(name) or name.startswith(".lock-"):
                continue
            self.store.delete(name)
        self.store.sync()

    def retire_errors(self) -> int:
        """``--retry-failed``: move this shard's error files (all of them for an unsharded run) to retired/,
        so their rows are pending again. Returns how many files moved."""
        files = self.committed_names("errors", own_only=self.shard[1] != 1)
        if not files:
            return 0
        self.store.makedirs("retired")
        for name in files:
            self.store.move(name, f"retired/errors-{name.rpartition('/')[2]}")
        self.store.sync("retired")
        self.store.sync("errors")
        return len(files)

    def write_job_yaml(self, data: dict[str, Any]) -> None:
        text = _dump_yaml(data)
        self.store.write_bytes("job.yaml", text.encode("utf-8"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.store.write_bytes(self.manifest_name, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))


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


def shard_rows(store: Store, name: str) -> int:
    """A committed shard's row count, from its Parquet footer (Arrow is imported only when one is read)."""
    import pyarrow.parquet as pq

    try:
        with store.open_input(name) as source:
            return int(pq.ParquetFile(source).metadata.num_rows)
    except (OSError, ValueError) as exc:
        raise ResumeError(f"committed shard {store.describe(name)!r} is unreadable: {exc}") from exc
