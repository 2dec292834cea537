"""The manifest: which committed files belong to a shard of a job, and the one check that decides whether an
output folder may be resumed by a job (used by ``tgbatch run`` and ``tgbatch validate`` alike).

A commit appends its files to the shard's commit log (``commitlog``), which is compacted into the manifest,
rewritten atomically, at the start and end of a run and whenever the log has grown as long as the manifest's
list: data before manifest, so every file either lists is complete. The manifest records the job's
fingerprint; a folder is only resumed by a job with the same one.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tgbatch._version import __version__
from tgbatch.errors import ResumeError
from tgbatch.job.fingerprint import Fingerprint
from tgbatch.output.commitlog import CommitLog
from tgbatch.output.layout import KINDS, OutputDir, shard_rows
from tgbatch.output.shards import CommittedFile

FORMAT = "tgbatch-output/1"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ResumeCheck:
    """What the folder holds for this job: every shard's manifest, and the rows they list."""

    manifests: list[tuple[Path, dict[str, Any]]]

    @property
    def new(self) -> bool:
        return not self.manifests

    @property
    def rows_written(self) -> int:
        return sum(int(m.get("rows_written") or 0) for _, m in self.manifests)

    @property
    def rows_failed(self) -> int:
        return sum(int(m.get("rows_failed") or 0) for _, m in self.manifests)

    def own(self, out: OutputDir) -> dict[str, Any]:
        """This shard's manifest from an earlier run, or ``{}``."""
        return next((m for path, m in self.manifests if path.name == out.manifest_name), {})


def check_resume(out: OutputDir, fingerprint: Fingerprint) -> ResumeCheck:
    """Whether ``out`` may be resumed by the job with ``fingerprint``: raises ``ResumeError`` naming what
    differs and the way out when it holds something else (another job's output, files tgbatch did not write,
    results without a manifest)."""
    out.check_is_folder()
    foreign = out.foreign_entries()
    if foreign:
        raise ResumeError(
            f"{out.describe()!r} is not a tgbatch output folder (it holds {', '.join(foreign[:5])}); choose "
            "another output.dir / --output"
        )
    manifests = out.manifests()
    for path, manifest in manifests:
        if manifest.get("fingerprint") != fingerprint.digest:
            differs = fingerprint.differences(manifest.get("fingerprint_parts") or {}) or ["the job"]
            raise ResumeError(
                f"{out.describe()!r} holds the output of a different job ({path.name} has fingerprint "
                f"{manifest.get('fingerprint')}, this job is {fingerprint.digest}): {', '.join(differs)} changed. "
                "Resuming would mix results. Run with --fresh to start over (deleting that output), or "
                "choose another --output"
            )
    if not manifests and (out.committed_names("data") or out.committed_names("errors")):
        raise ResumeError(
            f"{out.describe()!r} holds result files but no manifest, so their job is unknown; run with "
            "--fresh to start over, or choose another --output"
        )
    return ResumeCheck(manifests)


@dataclass
class Manifest:
    """One shard's manifest as a run keeps it: the files it committed, and what carries over between runs
    (creation time, time spent, number of runs)."""

    out: OutputDir
    job: str
    fingerprint: Fingerprint
    samples: int
    limit: int | None
    files: list[CommittedFile] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)
    elapsed_before_s: float = 0.0
    runs: int = 1
    started: float = field(default_factory=time.monotonic)
    log: CommitLog = field(init=False)
    #: ``input_rows`` as the manifest on disk says it
    _input_rows: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.log = CommitLog(self.out.store, self.out.manifest_name)

    @classmethod
    def resume(cls, out: OutputDir, previous: dict[str, Any], **kwargs: Any) -> Manifest:
        # the shard's files on disk are the truth; rows and tokens of those an earlier run listed (manifest and
        # log) come from the listing, the others' rows (renamed in, then a crash before the log) from their footer
        listed = {entry.get("file"): entry for entry in previous.get("files") or []}
        files = []
        for kind in KINDS:
            for name in out.committed_names(kind, own_only=True):
                entry = listed.get(name)
                rows = int(entry["rows"]) if entry is not None else shard_rows(out.store, name)
                files.append(CommittedFile(name, rows, entry.get("tokens") if entry is not None else None))
        return cls(
            out,
            files=files,
            created_at=previous.get("created_at") or now_iso(),
            elapsed_before_s=float(previous.get("elapsed_s") or 0.0),
            runs=int(previous.get("runs") or 0) + 1,
            **kwargs,
        )

    def add(self, files: list[CommittedFile]) -> None:
        """Record committed ``files`` (data before manifest: call it after their rename) in the commit log."""
        self.files.extend(files)
        self.log.append(files)

    def commit(self, files: list[CommittedFile], *, rows_selected: int | None, input_rows: int | None) -> None:
        """``add``, then compact when the log is due (or the input's row count is newly known, for status)."""
        self.add(files)
        if self.log.due(len(self.files)) or input_rows != self._input_rows:
            self.write(complete=False, rows_selected=rows_selected, input_rows=input_rows)

    def to_dict(self, *, complete: bool, rows_selected: int | None, input_rows: int | None = None) -> dict[str, Any]:
        index, count = self.out.shard
        return {
            "format": FORMAT,
            "tgbatch_version": __version__,
            "job": self.job,
            "fingerprint": self.fingerprint.digest,
            "fingerprint_parts": self.fingerprint.parts,
            "shard": {"index": index, "count": count},
            "samples": self.samples,
            "limit": self.limit,
            "complete": complete,
            "rows_selected": rows_selected,
            # the whole input's rows (after the limit): every shard's manifest knows the job's size from it
            "input_rows": input_rows,
            "rows_written": sum(f.rows for f in self.files if f.file.startswith("data/")),
            "rows_failed": sum(f.rows for f in self.files if f.file.startswith("errors/")),
            "created_at": self.created_at,
            "updated_at": now_iso(),
            "elapsed_s": round(self.elapsed_before_s + time.monotonic() - self.started, 3),
            "runs": self.runs,
            "files": [f.to_dict() for f in self.files],
        }

    def write(self, *, complete: bool, rows_selected: int | None, input_rows: int | None = None) -> None:
        """Write the manifest in full (every file), then empty the commit log it now covers: a compaction."""
        self.out.write_manifest(self.to_dict(complete=complete, rows_selected=rows_selected, input_rows=input_rows))
        self._input_rows = input_rows
        self.log.clear()
