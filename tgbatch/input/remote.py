"""``dataset.path`` as an object-store URL (``s3://bucket/x.parquet``, ``s3://bucket/prefix/*.jsonl``, a prefix
holding data files): the objects are copied through fsspec into a local cache, then read like local files.

A copy, not a stream: every reader (Parquet, Arrow IPC, CSV, JSON Lines) then keeps the random access it
relies on (footers, counting rows before reading them), and a resumed run reads its input again from the cache
without downloading it (an object is fetched again only when its size or ETag changed)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tgbatch.errors import DatasetError
from tgbatch.job.location import REMOTE_SCHEMES, url_scheme


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tgbatch" / "inputs"


def fetch(url: str, is_data: Any) -> list[Path]:
    """The files named by ``url`` (one object, a glob, or every data file under a prefix, as ``is_data(name)``
    tells), copied into the cache; sorted by their URL."""
    scheme = url_scheme(url) or ""
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(url, use_listings_cache=False)
    except ImportError as exc:
        raise DatasetError(
            f"dataset.path: reading {scheme}:// needs the {REMOTE_SCHEMES.get(scheme, 'fsspec')} package; "
            "install it with: pip install 'tgbatch[s3]'"
        ) from exc
    try:
        if any(ch in path for ch in "*?["):
            found = fs.glob(path, detail=True)
        elif fs.isfile(path):
            found = {path: fs.info(path)}
        else:
            found = {p: i for p, i in fs.find(path, detail=True).items() if is_data(p.rsplit("/", 1)[-1])}
        infos = {p: i for p, i in found.items() if i.get("type") == "file"}
        if not infos:
            raise DatasetError(f"dataset.path: {url!r} matches no file")
        folder = cache_root() / hashlib.sha256(url.encode()).hexdigest()[:16]
        return [_cached(fs, p, info, folder) for p, info in sorted(infos.items())]
    except OSError as exc:
        raise DatasetError(f"dataset.path: cannot read {url!r}: {exc}") from exc


def _cached(fs: Any, path: str, info: dict[str, Any], folder: Path) -> Path:
    local = folder / path.lstrip("/")
    stamp = local.with_name(f".{local.name}.stamp")
    want = json.dumps({"size": info.get("size"), "etag": info.get("ETag") or info.get("etag")})
    if local.is_file() and stamp.is_file() and stamp.read_text() == want:
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(f".{local.name}.{os.getpid()}.part")
    fs.get_file(path, str(partial))
    os.replace(partial, local)
    stamp.write_text(want)
    return local
