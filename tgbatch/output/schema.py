"""The output's explicit Arrow schemas (``data/`` and ``errors/``), and the row builders that fill them, side by
side so a column and the code that fills it change together."""
from __future__ import annotations

from typing import Any

import pyarrow as pa

from tgbatch.types import GenerationResult

PREFILL_TOKEN = pa.struct([("id", pa.uint32()), ("text", pa.string()), ("logprob", pa.float32())])
TOKEN = pa.struct([("id", pa.uint32()), ("text", pa.string()), ("logprob", pa.float32()), ("special", pa.bool_())])
BEST_OF_SEQUENCE = pa.struct(
    [
        ("generated_text", pa.string()),
        ("finish_reason", pa.string()),
        ("generated_tokens", pa.int32()),
        ("seed", pa.uint64()),
        ("prefill", pa.list_(PREFILL_TOKEN)),
        ("tokens", pa.list_(TOKEN)),
        ("top_tokens", pa.list_(pa.list_(TOKEN))),
    ]
)
DETAILS = pa.struct(
    [
        ("prefill", pa.list_(PREFILL_TOKEN)),
        ("tokens", pa.list_(TOKEN)),
        ("top_tokens", pa.list_(pa.list_(TOKEN))),
        ("best_of_sequences", pa.list_(BEST_OF_SEQUENCE)),
    ]
)

#: the columns of DIR/data/*.parquet before the carried input columns
DATA_FIELDS: list[pa.Field] = [
    pa.field("row_id", pa.string(), nullable=False),
    pa.field("sample", pa.int32(), nullable=False),
    pa.field("prompt", pa.string()),
    pa.field("generated_text", pa.string()),
    pa.field("finish_reason", pa.string()),
    pa.field("generated_tokens", pa.int32()),
    pa.field("seed", pa.uint64()),
    pa.field("details", DETAILS),
    pa.field("attempts", pa.int32()),
    pa.field("latency_s", pa.float64()),
    pa.field("endpoint", pa.string()),
]
#: the columns of DIR/errors/*.parquet before the carried input columns
ERROR_FIELDS: list[pa.Field] = [
    pa.field("row_id", pa.string(), nullable=False),
    pa.field("sample", pa.int32(), nullable=False),
    pa.field("prompt", pa.string()),
    pa.field("error_type", pa.string()),
    pa.field("server_error_type", pa.string()),
    pa.field("http_status", pa.int32()),
    pa.field("message", pa.string()),
    pa.field("attempts", pa.int32()),
    pa.field("latency_s", pa.float64()),
    pa.field("endpoint", pa.string()),
    pa.field("seed", pa.uint64()),
]
RESERVED_NAMES = frozenset(f.name for f in DATA_FIELDS) | frozenset(f.name for f in ERROR_FIELDS)


def output_schemas(carried: list[pa.Field]) -> tuple[pa.Schema, pa.Schema]:
    """The data and error schemas for the given carried input columns (already renamed off clashes)."""
    carried = [f.with_nullable(True) for f in carried]
    return pa.schema(DATA_FIELDS + carried), pa.schema(ERROR_FIELDS + carried)




# -- the row builders: one record per row (one sample), in the schemas' column names ---------------------------


def data_record(
    *,
    row_id: str,
    sample: int,
    prompt: str | None,
    result: GenerationResult,
    seed: int | None,
    attempts: int,
    latency_s: float,
    endpoint: str | None,
    details: str,
    carried: list[tuple[str, str]],
    row: dict[str, Any],
) -> dict[str, Any]:
    """A ``data/`` record. ``seed``: the one sent (else the one the server reported); ``details``: the job's
    ``output.details`` level (``none``, ``summary`` or ``full``)."""
    record: dict[str, Any] = {
        "row_id": row_id,
        "sample": sample,
        "prompt": prompt,
        "generated_text": result.text,
        "seed": seed if seed is not None else result.seed,
        "attempts": attempts,
        "latency_s": latency_s,
        "endpoint": endpoint,
    }
    if details != "none":
        record["finish_reason"] = result.finish_reason
        record["generated_tokens"] = result.generated_tokens
    if details == "full":
        record["details"] = result.details
    for src, dst in carried:
        record[dst] = row.get(src)
    return record


def error_record(
    *,
    row_id: str,
    sample: int,
    prompt: str | None,
    error: BaseException,
    attempts: int,
    latency_s: float,
    endpoint: str | None,
    seed: int | None,
    carried: list[tuple[str, str]],
    row: dict[str, Any],
) -> dict[str, Any]:
    """An ``errors/`` record: the error's class and, for a server's answer, its status, type and message."""
    record: dict[str, Any] = {
        "row_id": row_id,
        "sample": sample,
        "prompt": prompt,
        "error_type": type(error).__name__,
        "server_error_type": getattr(error, "error_type", None),
        "http_status": getattr(error, "status_code", None),
        "message": getattr(error, "message", None) or str(error),
        "attempts": attempts,
        "latency_s": latency_s,
        "endpoint": endpoint,
        "seed": seed,
    }
    for src, dst in carried:
        record[dst] = row.get(src)
    return record
