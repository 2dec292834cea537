"""The state of an output folder, summed over every shard's manifest and committed files, plus the live
figures of the shards running now (their ``progress*.json``) and the last runs' ``summary*.json``."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tgbatch.errors import ResumeError
from tgbatch.metrics.merge import merge_snapshots
from tgbatch.output.layout import OutputDir, shard_rows
from tgbatch.output.progress import is_live, pid_alive, read_stats_files
from tgbatch.output.store import Location, Store

#: the bulky parts of a snapshot that ``status --json`` leaves out (they are for merging shards)
_HISTOGRAMS = ("latency_histogram", "recent_latency_histogram")


def collect_status(
    root: Location,
    *,
    now: float | None = None,
    hostname: str | None = None,
    alive: Callable[[int], bool] = pid_alive,
) -> dict[str, Any]:
    """Done, failed, remaining (when known), tokens and time of the output folder ``root``.

    The committed files are counted (they are the truth); the manifests give the totals and times. When a run
    is writing the folder now (a ``progress*.json`` in state ``running`` whose pid is alive on this host, or
    recently updated from another host), ``running`` is true and ``live`` holds its figures (shards summed):
    done and failed including rows not committed yet, in flight, rates, ETA, latency, retries, endpoints.
    ``last_run`` holds the final figures of the last finished runs (``summary*.json``), ``dead`` the runs whose
    progress file says running but whose process is gone. ``now`` (Unix seconds), ``hostname`` and ``alive``
    are for tests. Raises ``ResumeError`` when ``root`` is not a tgbatch output folder.
    """
    out = OutputDir(root)
    manifests = out.manifests()
    data_files = out.committed_names("data")
    error_files = out.committed_names("errors")
    if not manifests and not data_files and not error_files:
        if not out.exists():
            raise ResumeError(
                f"{out.describe()!r}: no such folder (give a job's output folder, e.g. runs/<job name>)"
            )
        raise ResumeError(f"{out.describe()!r} is not a tgbatch output folder (no manifest.json and no data/)")
    listed = _listed_files(manifests)
    done, tokens = _count(out.store, data_files, listed, tokens=True)
    failed, _ = _count(out.store, error_files, listed, tokens=False)
    by_count: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for _, manifest in manifests:
        by_count[int((manifest.get("shard") or {}).get("count", 1))].append(manifest)
    fingerprints = sorted({str(m["fingerprint"]) for _, m in manifests if m.get("fingerprint")})
    samples = next((int(m.get("samples", 1)) for _, m in manifests), 1)
    total = _total(by_count, samples)
    elapsed = [float(m.get("elapsed_s") or 0.0) for _, m in manifests]
    live, dead = _live(out.store, manifests, done, failed, total, now=now, hostname=hostname, alive=alive)
    summaries = [s for _, s in read_stats_files(out.store, "summary")]
    return {
        "output_dir": str(root),
        "job": next((m.get("job") for _, m in manifests), None),
        "fingerprint": fingerprints[0] if len(fingerprints) == 1 else fingerprints,
        "samples": samples,
        "done": done,
        "failed": failed,
        "total": total,
        "remaining": None if total is None else max(0, total - done - failed),
        "complete": _complete(by_count),
        "generated_tokens": tokens,
        "elapsed_s": round(max(elapsed, default=0.0), 3),
        "elapsed_s_all_shards": round(sum(elapsed), 3),
        "data_files": len(data_files),
        "error_files": len(error_files),
        "shards": [_shard_entry(path, manifest) for path, manifest in manifests],
        "running": live is not None,
        "live": live,
        "dead": dead,
        "last_run": _strip(merge_snapshots(summaries)) if summaries and live is None else None,
    }


def _shard_entry(path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    shard = manifest.get("shard") or {"index": 0, "count": 1}
    return {
        "manifest": path.name,
        "shard": f"{shard.get('index', 0)}/{shard.get('count', 1)}",
        "complete": bool(manifest.get("complete")),
        **{k: manifest.get(k) for k in ("rows_selected", "rows_written", "rows_failed", "elapsed_s", "runs")},
        "updated_at": manifest.get("updated_at"),
    }


def _complete(by_count: dict[int, list[dict[str, Any]]]) -> bool:
    """Some full split (every shard I of one N) says it is complete."""
    return any(
        len({m["shard"]["index"] for m in group if m.get("complete")}) == count for count, group in by_count.items()
    )


def _listed_files(manifests: list[tuple[Path, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Every committed file a manifest lists, by its path in the folder (``data/part-...``)."""
    return {entry["file"]: entry for _, m in manifests for entry in m.get("files") or [] if "file" in entry}


def _count(store: Store, files: list[str], listed: dict[str, dict[str, Any]], *, tokens: bool) -> tuple[int, int]:
    """Rows (and generated tokens) in ``files``: from the manifests where they list the file, else from the
    file itself (a crash between a commit and its manifest, or an older version's manifest without tokens).
    Only files on disk count: the files are the truth, the manifests a cheap index of them."""
    rows = total_tokens = 0
    for name in files:
        entry = listed.get(name)
        rows += int(entry["rows"]) if entry is not None else shard_rows(store, name)
        if tokens:
            known = entry.get("tokens") if entry is not None else None
            total_tokens += int(known) if known is not None else _tokens(store, name)
    return rows, total_tokens


def _strip(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in snapshot.items() if k not in _HISTOGRAMS}


def _live(
    store: Store,
    manifests: list[tuple[Path, dict[str, Any]]],
    committed_done: int,
    committed_failed: int,
    total: int | None,
    *,
    now: float | None,
    hostname: str | None,
    alive: Callable[[int], bool],
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The running shards' figures summed (or ``None`` when nothing runs), and the runs that died."""
    now = time.time() if now is None else now
    running: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    for _, snapshot in read_stats_files(store, "progress"):
        if is_live(snapshot, now=now, hostname=hostname, alive=alive):
            running.append(snapshot)
        elif snapshot.get("state") == "running":
            dead.append({k: snapshot.get(k) for k in ("shard", "pid", "hostname", "updated_at")})
    if not running:
        return None, dead
    live = _strip(merge_snapshots(running))
    live["runs"] = [
        {
            "shard": s.get("shard"),
            "pid": s.get("pid"),
            "hostname": s.get("hostname"),
            "updated_at": s.get("updated_at"),
            "age_s": round(max(0.0, now - float(s.get("updated_unix") or now)), 1),
        }
        for s in running
    ]
    # done/failed of the whole folder: the running shards' own figures (uncommitted rows included) plus the
    # committed rows of the other shards of the same split
    counts = {str(s.get("shard", "0/1")).partition("/")[2] for s in running}
    if len(counts) == 1:
        count = next(iter(counts))
        running_tags = {str(s.get("shard")) for s in running}
        others = [
            m
            for _, m in manifests
            if str((m.get("shard") or {}).get("count", 1)) == count
            and f"{(m.get('shard') or {}).get('index', 0)}/{count}" not in running_tags
        ]
        done = sum(int(s.get("done") or 0) for s in running) + sum(int(m.get("rows_written") or 0) for m in others)
        failed = sum(int(s.get("failed") or 0) for s in running) + sum(int(m.get("rows_failed") or 0) for m in others)
        live["done"], live["failed"] = max(done, committed_done), max(failed, committed_failed)
        if total is not None:
            live["remaining"] = max(0, total - live["done"] - live["failed"])
        elif any(not m.get("complete") for m in others):
            live["remaining"] = None  # a stopped shard's rows are still to do, and how many is not known
    live["committed_done"], live["committed_failed"] = committed_done, committed_failed
    return live, dead


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
    if best is None:  # a run that stopped before reading all its input: the input's count, if it was made
        counted = [m for group in by_count.values() for m in group if m.get("input_rows") is not None]
        if counted:  # the latest run's count (a later run may have used another --limit)
            best = int(max(counted, key=lambda m: str(m.get("updated_at")))["input_rows"]) * samples
    return best


def _tokens(store: Store, name: str) -> int:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        with store.open_input(name) as source:
            column = pq.read_table(source, columns=["generated_tokens"]).column("generated_tokens")
    except (OSError, ValueError, KeyError) as exc:
        raise ResumeError(f"{store.describe(name)!r} is unreadable: {exc}") from exc
    total = pc.sum(column).as_py()
    return int(total or 0)
