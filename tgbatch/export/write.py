"""Writing an export: to a temp file next to the target, fsynced and renamed, so ``-o PATH`` is either the
previous file or the complete new one, never half of one; and ``--push-to-hub`` through ``datasets``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tgbatch.errors import ExportError
from tgbatch.output.atomic import commit_table, fsync_dir, temp_path

if TYPE_CHECKING:
    import pyarrow as pa


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)  # dates, decimals of carried columns


def write_jsonl(records: Iterable[dict[str, Any]], path: Path) -> int:
    _check_parent(path)
    tmp = temp_path(path)
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")
                count += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return count


def write_parquet(table: pa.Table, path: Path) -> int:
    _check_parent(path)
    commit_table(table, path)
    return int(table.num_rows)


def _check_parent(path: Path) -> None:
    if path.is_dir():
        raise ExportError(f"-o {str(path)!r} is a folder; give a file name, e.g. -o {path / 'train.jsonl'}")
    if not path.parent.is_dir():
        raise ExportError(f"-o {str(path)!r}: the folder {str(path.parent)!r} does not exist; create it first")


def hub_token(token_env: str = "HF_TOKEN") -> str:
    """The token ``--push-to-hub`` uploads with; refused before anything is written when it is missing."""
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise ExportError(
            f"--push-to-hub needs a Hugging Face token with write access in ${token_env} "
            f"(export {token_env}=hf_...; create one at https://huggingface.co/settings/tokens)"
        )
    return token


def push_to_hub(path: Path, repo: str, token: str) -> None:  # pragma: no cover - needs the network
    from datasets import load_dataset

    kind = "parquet" if path.suffix == ".parquet" else "json"
    load_dataset(kind, data_files=str(path), split="train").push_to_hub(repo, token=token)
