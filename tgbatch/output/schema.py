"""The output's explicit Arrow schemas (``data/`` and ``errors/``), and the row builders that fill them, side by
side so a column and the code that fills it change together."""
from __future__ import annotations

import pyarrow as pa

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


