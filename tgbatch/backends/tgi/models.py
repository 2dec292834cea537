"""Typed requests and responses of TGI's ``/generate``, ``/generate_stream`` and ``/info`` routes.

Names and fields follow the ``text-generation`` client (``Response``, ``Details``, ``Token``, ...), with what
current servers add (``index``, ``input_length``, ``top_tokens``). Parsing is tolerant (unknown keys are ignored,
old ``/info`` names are accepted); serialising (``to_wire()``) gives back the server's own JSON shape and key
order, omitting ``best_of_sequences`` / ``top_tokens`` where the server omits them. Seeds are unsigned 64-bit
integers and stay Python ``int`` end to end.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_serializer


class _Model(BaseModel):
    # servers add fields over time; ignoring unknown keys keeps old clients working against new servers
    model_config = ConfigDict(extra="ignore", frozen=True)


class FinishReason(enum.StrEnum):
    """Why generation stopped."""

    Length = "length"
    EndOfSequenceToken = "eos_token"
    StopSequence = "stop_sequence"


class InputToken(_Model):
    """A prompt (prefill) token. The first one's logprob cannot be computed and is ``None``."""

    id: int
    text: str
    logprob: float | None = None


PrefillToken = InputToken


class Token(_Model):
    """A generated token."""

    id: int
    text: str
    logprob: float | None = None
    special: bool = False


def _drop_absent(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    # TGI leaves these keys out entirely (serde skip_serializing_if) rather than sending null
    for key in keys:
        if data.get(key) is None:
            data.pop(key, None)
    return data


class BestOfSequence(_Model):
    """One of the other ``best_of`` candidates."""

    generated_text: str
    finish_reason: FinishReason
    generated_tokens: int
    seed: int | None = None
    prefill: list[InputToken] = Field(default_factory=list)
    tokens: list[Token] = Field(default_factory=list)
    top_tokens: list[list[Token]] | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: Any) -> dict[str, Any]:
        return _drop_absent(handler(self), ("top_tokens",))


class Details(_Model):
    """``details`` of a ``/generate`` response."""

    finish_reason: FinishReason
    generated_tokens: int
    seed: int | None = None
    prefill: list[InputToken] = Field(default_factory=list)
    tokens: list[Token] = Field(default_factory=list)
    best_of_sequences: list[BestOfSequence] | None = None
    top_tokens: list[list[Token]] | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: Any) -> dict[str, Any]:
        return _drop_absent(handler(self), ("best_of_sequences", "top_tokens"))


class Response(_Model):
    """A ``/generate`` response. ``details`` is ``None`` when the server was not asked for them."""

    generated_text: str
    details: Details | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: Any) -> dict[str, Any]:
        return _drop_absent(handler(self), ("details",))

    def to_wire(self) -> dict[str, Any]:
        """The JSON object the server sent (``json.dumps`` of it is byte-compatible in key order)."""
        return self.model_dump(mode="json")


class StreamDetails(_Model):
    """``details`` of the final stream event."""

    finish_reason: FinishReason
    generated_tokens: int
    seed: int | None = None
    input_length: int | None = None


class StreamResponse(_Model):
    """One SSE event of ``/generate_stream``. ``generated_text`` and ``details`` are set on the last one only."""

    index: int | None = None
    token: Token
    top_tokens: list[Token] | None = None
    generated_text: str | None = None
    details: StreamDetails | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: Any) -> dict[str, Any]:
        # intermediate events carry explicit nulls for generated_text/details; only top_tokens is omitted
        return _drop_absent(handler(self), ("top_tokens",))


class Info(_Model):
    """``GET /info``. Accepts the current field names and the pre-2.1 ones (``max_input_length``)."""

    model_id: str
    model_sha: str | None = None
    model_pipeline_tag: str | None = None
    model_dtype: str | None = None
    model_device_type: str | None = None
    max_concurrent_requests: int | None = None
    max_best_of: int | None = None
    max_stop_sequences: int | None = None
    max_input_tokens: int | None = Field(
        default=None, validation_alias=AliasChoices("max_input_tokens", "max_input_length")
    )
    max_total_tokens: int | None = None
    validation_workers: int | None = None
    max_client_batch_size: int | None = None
    max_batch_total_tokens: int | None = None
    router: str | None = None
    version: str | None = None
    sha: str | None = None
    docker_label: str | None = None


class Grammar(_Model):
    """A constrained-decoding grammar: ``json`` (a JSON schema, as an object or a JSON string), ``json_object``,
    ``json_schema`` (``{"name": ..., "schema": {...}}``) or ``regex``."""

    type: Literal["json", "json_object", "json_schema", "regex"]
    value: Any


GrammarType = Literal["json", "json_object", "json_schema", "regex"]
