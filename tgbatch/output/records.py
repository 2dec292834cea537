"""The output's records, by the kind of job: one small strategy object per kind (``/generate``; chat and
completions), holding the ``data/`` and ``errors/`` schemas and building their records, so the runner writes a
row without knowing which api the job speaks.

A /generate job's schemas and records are ``output.schema``'s, unchanged. A chat or completions job's ``data/``::

    row_id, sample, messages (list<struct<role, content>>: the rendered input) | prompt (completions),
    generated_text (the answer's content), reasoning, tool_calls (JSON text), finish_reason (as the server said),
    prompt_tokens, generated_tokens, seed, model, details (the logprobs, when asked), format_ok (the answer checked
    against response_format; null without one), attempts, latency_s, endpoint, <carried input columns>
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pyarrow as pa

from tgbatch.job.render import Rendered
from tgbatch.output.schema import ERROR_FIELDS, RESERVED_NAMES, data_record, error_record, output_schemas
from tgbatch.types import GenerationResult

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
ALTERNATIVE = pa.struct([("token", pa.string()), ("logprob", pa.float64())])
LOGPROB = pa.struct([("token", pa.string()), ("logprob", pa.float64()), ("top_logprobs", pa.list_(ALTERNATIVE))])
INPUT_TYPES = {"messages": pa.list_(MESSAGE), "prompt": pa.string()}


def chat_fields(input_column: str) -> tuple[list[pa.Field], list[pa.Field]]:
    """The ``data/`` and ``errors/`` columns of a chat (``messages``) or completions (``prompt``) job, before the
    carried input columns."""
    head = [
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("sample", pa.int32(), nullable=False),
        pa.field(input_column, INPUT_TYPES[input_column]),
    ]
    data = [
        *head,
        pa.field("generated_text", pa.string()),
        pa.field("reasoning", pa.string()),
        pa.field("tool_calls", pa.string()),
        pa.field("finish_reason", pa.string()),
        pa.field("prompt_tokens", pa.int32()),
        pa.field("generated_tokens", pa.int32()),
        pa.field("seed", pa.uint64()),
        pa.field("model", pa.string()),
        pa.field("details", pa.list_(LOGPROB)),
        pa.field("format_ok", pa.bool_()),
        pa.field("attempts", pa.int32()),
        pa.field("latency_s", pa.float64()),
        pa.field("endpoint", pa.string()),
    ]
    errors = [*head, *(f for f in ERROR_FIELDS if f.name not in ("row_id", "sample", "prompt"))]
    return data, errors


def reserved_names(input_column: str | None) -> frozenset[str]:
    """The output's own column names (an input column of that name is carried under another)."""
    if input_column is None:
        return RESERVED_NAMES
    data, errors = chat_fields(input_column)
    return frozenset(f.name for f in data + errors)


class Records(Protocol):
    data_schema: pa.Schema
    error_schema: pa.Schema

    def data(
        self,
        *,
        row_id: str,
        sample: int,
        rendered: Rendered,
        result: GenerationResult,
        seed: int | None,
        attempts: int,
        latency_s: float,
        endpoint: str | None,
        row: dict[str, Any],
    ) -> dict[str, Any]: ...

    def error(
        self,
        *,
        row_id: str,
        sample: int,
        rendered: Rendered | None,
        error: BaseException,
        attempts: int,
        latency_s: float,
        endpoint: str | None,
        seed: int | None,
        row: dict[str, Any],
    ) -> dict[str, Any]: ...


def _schema(fields: list[pa.Field], carried: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields + [f.with_nullable(True) for f in carried])


class GenerateRecords:
    """A /generate job's records: ``output.schema``'s, as they always were."""

    def __init__(self, carried: list[tuple[str, str]], carried_fields: list[pa.Field], details: str) -> None:
        self.carried = carried
        self.details = details
        self.data_schema, self.error_schema = output_schemas(carried_fields)

    def data(self, *, rendered: Rendered, **kw: Any) -> dict[str, Any]:
        return data_record(prompt=rendered.prompt, details=self.details, carried=self.carried, **kw)

    def error(self, *, rendered: Rendered | None, **kw: Any) -> dict[str, Any]:
        return error_record(prompt=rendered.prompt if rendered else None, carried=self.carried, **kw)


class ChatRecords:
    """A chat or completions job's records. ``format_check``: the response_format's answer check, if any."""

    def __init__(
        self,
        input_column: str,
        carried: list[tuple[str, str]],
        carried_fields: list[pa.Field],
        format_check: Callable[[str], bool] | None,
    ) -> None:
        self.input_column = input_column
        self.carried = carried
        self.format_check = format_check
        data, errors = chat_fields(input_column)
        self.data_schema = _schema(data, carried_fields)
        self.error_schema = _schema(errors, carried_fields)

    def _input(self, rendered: Rendered | None) -> Any:
        if rendered is None:
            return None
        return rendered.prompt if self.input_column == "prompt" else list(rendered.messages or ())

    def data(
        self,
        *,
        row_id: str,
        sample: int,
        rendered: Rendered,
        result: GenerationResult,
        seed: int | None,
        attempts: int,
        latency_s: float,
        endpoint: str | None,
        row: dict[str, Any],
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "row_id": row_id,
            "sample": sample,
            self.input_column: self._input(rendered),
            "generated_text": result.text,
            "reasoning": result.reasoning,
            "tool_calls": result.tool_calls,
            "finish_reason": result.finish_reason,
            "prompt_tokens": result.prompt_tokens,
            "generated_tokens": result.generated_tokens,
            "seed": seed if seed is not None else result.seed,
            "model": result.model,
            "details": (result.details or {}).get("logprobs"),
            "format_ok": self.format_check(result.text or "") if self.format_check is not None else None,
            "attempts": attempts,
            "latency_s": latency_s,
            "endpoint": endpoint,
        }
        for src, dst in self.carried:
            record[dst] = row.get(src)
        return record

    def error(self, *, rendered: Rendered | None, **kw: Any) -> dict[str, Any]:
        record = error_record(prompt=None, carried=self.carried, **kw)
        del record["prompt"]
        record[self.input_column] = self._input(rendered)
        return record
