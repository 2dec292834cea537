"""The state of an output folder, summed over every shard's manifest and committed files."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import ResumeError
from .layout import OutputDir


def collect_status(root: Path) -> dict[str, Any]:
    """Done, failed, remaining (when known), tokens and time of the output folder ``root``.

    The committed files are counted (they are the truth); the manifests give the totals and times. Raises
    ``ResumeError`` when ``root`` is not a tgbatch output folder.
    """
    out = OutputDir(root)
    manifests = out.manifests()
    data_files = out.committed("data")
    error_files = out.committed("errors")
    if not manifests and not data_files and not error_files:
        raise ResumeError(f"{str(root)!r} is not a tgbatch output folder (no manifest.json and no data/)")
    done = sum(_rows(p) for p in data_files)
    failed = sum(_rows(p) for p in error_files)
    tokens = sum(_tokens(p) for p in data_files)

    shards = []
    by_count: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for path, manifest in manifests:
        shard = manifest.get("shard") or {"index": 0, "count": 1}
        entry = {
            "manifest": path.name,
            "shard": f"{shard.get('index', 0)}/{shard.get('count', 1)}",
            "complete": bool(manifest.get("complete")),
            "rows_selected": manifest.get("rows_selected"),
            "rows_written": manifest.get("rows_written"),
            "rows_failed": manifest.get("rows_failed"),
            "elapsed_s": manifest.get("elapsed_s"),
            "runs": manifest.get("runs"),
            "updated_at": manifest.get("updated_at"),
        }
        shards.append(entry)
        by_count[int(shard.get("count", 1))].append(manifest)

    fingerprints = sorted({m.get("fingerprint") for _, m in manifests if m.get("fingerprint")})
    samples = next((int(m.get("samples", 1)) for _, m in manifests), 1)
    total = _total(by_count, samples)
    complete = any(
        len({m["shard"]["index"] for m in group if m.get("complete")}) == count for count, group in by_count.items()
    )
    elapsed = [float(m.get("elapsed_s") or 0.0) for _, m in manifests]
    return {
        "output_dir": str(root),
        "job": next((m.get("job") for _, m in manifests), None),
        "fingerprint": fingerprints[0] if len(fingerprints) == 1 else fingerprints,
        "samples": samples,
        "done": done,
        "failed": failed,
        "total": total,
        "remaining": None if total is None else max(0, total - done - failed),
        "complete": complete,
        "generated_tokens": tokens,
        "elapsed_s": round(max(elapsed, default=0.0), 3),
        "elapsed_s_all_shards": round(sum(elapsed), 3),
        "data_files": len(data_files),
        "error_files": len(error_files),
        "shards": shards,
    }


def _total(by_count: dict[int, list[dict[str, Any]]], samples: int) -> int | None:
    """Rows to do (times samples), from a full set of shard manifests that all know their row count."""
    best = None
    for count, group in by_count.items():
        known = {}
        for m in group:
            if m.get("rows_selected") is not None:
                known[m["shard"]["index"]] = int(m["rows_selected"])
        if len(known) == count:
            best = sum(known.values()) * samples
    return best


def _rows(path: Path) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError) as exc:
        raise ResumeError(f"{str(path)!r} is unreadable: {exc}") from exc


def _tokens(path: Path) -> int:
    try:
        column = pq.read_table(path, columns=["generated_tokens"]).column("generated_tokens")
    except (OSError, ValueError, KeyError) as exc:
        raise ResumeError(f"{str(path)!r} is unreadable: {exc}") from exc
    total = pc.sum(column).as_py()
    return int(total or 0)
