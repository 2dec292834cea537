"""An output folder as an OpenAI Batch output file: one line per row, ``{id, custom_id, response: {status_code,
request_id, body}, error}``, the body a complete ``chat.completion`` or ``text_completion`` object (one choice per
sample), so code written for OpenAI's batch results reads tgbatch's unchanged (join on ``custom_id``).

A row with a failed sample is written as failed: ``error: {code, message}`` with the server's error type and
message, and ``response`` with the server's HTTP status and an OpenAI-style error body (``null`` when no server
answered: a timeout, a connection failure). Rows not yet run are not written."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tgbatch.errors import ExportError
from tgbatch.export.write import write_jsonl
from tgbatch.job.location import Location
from tgbatch.output.layout import OutputDir

_CHAT_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
_TEXT_REASONS = frozenset({"stop", "length", "content_filter"})


def write_openai_batch(folder: Location, out: Path) -> int:
    """Write ``folder``'s rows to ``out`` in OpenAI's batch output format (atomically); returns the number of
    lines."""
    layout = OutputDir(folder)
    api = _api_of(layout)
    data = _rows_by_id(layout, "data")
    errors = _rows_by_id(layout, "errors")
    created = _created(layout)

    def lines() -> Iterator[dict[str, Any]]:
        for row_id in sorted(data.keys() | errors.keys()):
            done = {d["sample"] for d in data.get(row_id, [])}
            failed = [r for r in errors.get(row_id, []) if r["sample"] not in done]
            yield _failed_line(row_id, failed[0]) if failed else _ok_line(row_id, data[row_id], api, created)

    return write_jsonl(lines(), out)


def _api_of(layout: OutputDir) -> str:
    import yaml

    try:
        spec = yaml.safe_load(layout.store.read_bytes("job.yaml").decode("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ExportError(
            f"{layout.describe()!r} is not a tgbatch output folder (no readable job.yaml: {exc})"
        ) from None
    api = (spec.get("endpoint") or {}).get("api") if isinstance(spec, dict) else None
    if api not in ("chat", "completions"):
        raise ExportError(
            f"--format openai-batch: {layout.describe()!r} is a /generate job; OpenAI's batch output holds chat "
            "completions or completions only (run the job with endpoint.api: chat or completions)"
        )
    return str(api)


def _created(layout: OutputDir) -> int:
    """When the job's output was created (its first manifest), as the bodies' ``created``: the same on every export."""
    stamps = [str(m["created_at"]) for _, m in layout.manifests() if m.get("created_at")]
    try:
        return int(dt.datetime.fromisoformat(min(stamps)).timestamp()) if stamps else 0
    except ValueError:
        return 0


def _rows_by_id(layout: OutputDir, kind: str) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for name in layout.committed_names(kind):
        for row in layout.store.read_table(name).to_pylist():
            rows.setdefault(row["row_id"], []).append(row)
    return rows


def _hex(*parts: Any) -> str:
    return hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=12).hexdigest()


def _ok_line(row_id: str, samples: list[dict[str, Any]], api: str, created: int) -> dict[str, Any]:
    samples = sorted({r["sample"]: r for r in samples}.values(), key=lambda r: r["sample"])
    first = samples[0]
    chat = api == "chat"
    body = {
        "id": ("chatcmpl-" if chat else "cmpl-") + _hex("completion", row_id),
        "object": "chat.completion" if chat else "text_completion",
        "created": created,
        "model": first.get("model") or "",
        "choices": [_chat_choice(r) if chat else _text_choice(r) for r in samples],
        "usage": _usage(samples),
    }
    response = {"status_code": 200, "request_id": _hex("request", row_id), "body": body}
    return {"id": "batch_req_" + _hex("line", row_id), "custom_id": row_id, "response": response, "error": None}


def _chat_choice(row: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": row.get("generated_text")}
    if row.get("reasoning") is not None:
        message["reasoning_content"] = row["reasoning"]
    if row.get("tool_calls"):
        message["tool_calls"] = json.loads(row["tool_calls"])
    return {
        "index": row["sample"],
        "message": message,
        "logprobs": _chat_logprobs(row.get("details")),
        "finish_reason": _reason(row.get("finish_reason"), _CHAT_REASONS),
    }


def _text_choice(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": row["sample"],
        "text": row.get("generated_text") or "",
        "logprobs": None,
        "finish_reason": _reason(row.get("finish_reason"), _TEXT_REASONS),
    }


def _chat_logprobs(details: Any) -> dict[str, Any] | None:
    if not details:
        return None
    tokens = [{**t, "bytes": None, "top_logprobs": [{**a, "bytes": None} for a in t["top_logprobs"]]} for t in details]
    return {"content": tokens}


def _reason(said: str | None, known: frozenset[str]) -> str:
    """OpenAI's finish reason: TGI's ``eos_token`` and ``stop_sequence`` (and anything else a server says) are
    ``stop``, the reason its types accept."""
    return said if said in known else "stop"


def _usage(samples: list[dict[str, Any]]) -> dict[str, int]:
    prompt = samples[0].get("prompt_tokens") or 0
    completion = sum(r.get("generated_tokens") or 0 for r in samples)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _failed_line(row_id: str, row: dict[str, Any]) -> dict[str, Any]:
    code = row.get("server_error_type") or row.get("error_type") or "error"
    message = row.get("message") or ""
    status = row.get("http_status")
    response = None
    if status is not None:
        error = {"message": message, "type": code, "param": None, "code": code}
        response = {"status_code": status, "request_id": _hex("request", row_id), "body": {"error": error}}
    line = {"id": "batch_req_" + _hex("line", row_id), "custom_id": row_id, "response": response}
    return {**line, "error": {"code": code, "message": message}}

