"""TGI's request rules, in the router's order and with its exact messages: one source of truth for the client
(which checks before sending) and the simulator (which answers as the router does).

The router checks a request in phases, and a server interleaves them with other work (the stream route's own
checks come before the concurrency semaphore, the rest after it), so each phase is its own function:

1. ``check_wire``        serde/axum: JSON types and ranges (422 text/plain ``Failed to deserialize ...``)
2. ``check_stream``      ``/generate_stream`` only: best_of and decoder_input_details
3. ``check_best_of``     ``/generate`` with best_of > 1: against ``max_best_of``
4. ``check_parameters``  validation.rs steps 1-11 (sampling, ranges, stop count, seed, top_n_tokens)
5. ``check_inputs``      steps 12-14 (empty input, truncate, token budget) given the prompt's token count
6. ``check_grammar``     step 15

Limits a client cannot know without asking the server (``max_best_of``, ``max_stop_sequences``, token limits)
are checked only when a ``Limits`` with those values is given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from tgbatch.backends.tgi.models import Grammar, Info
from tgbatch.errors import ValidationError
from tgbatch.types import U32_MAX, U64_MAX

PREFIX = "Input validation error: "
DESERIALIZE_PREFIX = "Failed to deserialize the JSON body into the target type: "
#: v3.1.1+: the token budget is checked against at most this many new tokens (generation is re-queued in chunks)
DEFAULT_GENERATION_LENGTH = 1024

# TGI's GenerateParameters, as Rust types: the wire check uses them to answer as serde would
_WIRE_TYPES: dict[str, str] = {
    "adapter_id": "string",
    "best_of": "usize",
    "decoder_input_details": "bool",
    "details": "bool",
    "do_sample": "bool",
    "frequency_penalty": "f32",
    "grammar": "grammar",
    "max_new_tokens": "u32",
    "repetition_penalty": "f32",
    "return_full_text": "bool",
    "seed": "u64",
    "stop": "strings",
    "temperature": "f32",
    "top_k": "i32",
    "top_n_tokens": "u32",
    "top_p": "f32",
    "truncate": "usize",
    "typical_p": "f32",
    "watermark": "bool",
}
_INT_RANGES = {"usize": (0, U64_MAX), "u32": (0, U32_MAX), "u64": (0, U64_MAX), "i32": (-(2**31), 2**31 - 1)}
_GRAMMAR_VARIANTS = ("json", "json_object", "regex", "json_schema")


class Parameters(BaseModel):
    """Every request parameter of TGI's ``/generate``. Unknown names are refused (a typo such as
    ``stop_sequences`` would be silently ignored by the server). ``None`` means "not sent: server default"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    adapter_id: str | None = Field(None, description="LoRA adapter id to apply.")
    best_of: StrictInt | None = Field(None, description="Generate this many sequences, return the best.")
    decoder_input_details: StrictBool = Field(False, description="Return the prompt tokens with logprobs.")
    details: StrictBool = Field(False, description="Return generation details (tokens, finish reason, seed).")
    do_sample: StrictBool = Field(False, description="Sample instead of greedy decoding.")
    frequency_penalty: float | None = Field(None, description="Penalty on token frequency, in [-2, 2].")
    grammar: Grammar | None = Field(None, description="Constrain the output to a JSON schema or a regex.")
    max_new_tokens: StrictInt | None = Field(None, description="Most tokens to generate (> 0).")
    repetition_penalty: float | None = Field(None, description="Repetition penalty (> 0; 1.0 is none).")
    return_full_text: StrictBool | None = Field(None, description="Prepend the prompt to generated_text.")
    seed: StrictInt | None = Field(None, description="Sampling seed, an unsigned 64-bit integer.")
    stop: list[str] = Field(default_factory=list, description="Stop when one of these is generated.")
    temperature: float | None = Field(None, description="Sampling temperature (> 0).")
    top_k: StrictInt | None = Field(None, description="Keep the k most likely tokens (> 0).")
    top_n_tokens: StrictInt | None = Field(None, description="Return the n most likely tokens at each step.")
    top_p: float | None = Field(None, description="Nucleus sampling mass, in (0, 1).")
    truncate: StrictInt | None = Field(None, description="Keep only the last N prompt tokens (> 0).")
    typical_p: float | None = Field(None, description="Typical decoding mass, in (0, 1).")
    watermark: StrictBool = Field(False, description="Watermark the output.")

    @field_validator("frequency_penalty", "repetition_penalty", "temperature", "top_p", "typical_p")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @property
    def sampling(self) -> bool:
        """The router's idea of sampling (validation.rs step 1): any sampling knob set counts."""
        return bool(
            self.do_sample
            or self.temperature is not None
            or self.top_k is not None
            or self.top_p is not None
            or self.typical_p is not None
        )

    @property
    def effectively_sampling(self) -> bool:
        """The shard's idea of sampling: whether ``details.seed`` is reported (protocol notes section 7)."""
        return bool(
            self.do_sample
            or (self.temperature is not None and self.temperature != 1.0)
            or (self.top_k is not None and self.top_k != 0)
            or (self.top_p is not None and self.top_p < 1.0)
            or (self.typical_p is not None and self.typical_p < 1.0)
        )

    def to_wire(self) -> dict[str, Any]:
        """The ``parameters`` object to send: unset optional values are left out, ``stop`` is named ``stop``."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if name == "grammar":
                value = value.model_dump(mode="json")
            out[name] = value
        return out


@dataclass(frozen=True)
class Limits:
    """The router's configured limits. ``None`` means unknown: that check is left to the server."""

    max_best_of: int | None = 2
    max_stop_sequences: int | None = 4
    max_top_n_tokens: int | None = 5
    max_input_tokens: int | None = None
    max_total_tokens: int | None = None
    grammar_support: bool = True

    @classmethod
    def unknown(cls) -> Limits:
        return cls(max_best_of=None, max_stop_sequences=None, max_top_n_tokens=None)

    @classmethod
    def from_info(cls, info: Info) -> Limits:
        # /info does not expose max_top_n_tokens; it stays unknown rather than assumed
        return cls(
            max_best_of=info.max_best_of,
            max_stop_sequences=info.max_stop_sequences,
            max_top_n_tokens=None,
            max_input_tokens=info.max_input_tokens,
            max_total_tokens=info.max_total_tokens,
        )


def _fail(message: str) -> ValidationError:
    return ValidationError(PREFIX + message)


# -- phase 1: serde ---------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    # serde's "invalid type: <unexpected>" wording
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def _wire_error(path: str, message: str) -> ValidationError:
    # serde_path_to_error prints no path for an error at the root ("missing field `inputs`")
    where = "" if path == "." else f"{path}: "
    return ValidationError(f"{DESERIALIZE_PREFIX}{where}{message}", error_type=None)


def _check_wire_value(path: str, rust: str, value: Any) -> None:
    if value is None and rust not in ("strings",):
        return  # every Option field accepts null; bools have serde defaults but null is an error there
    if rust == "bool":
        if not isinstance(value, bool):
            raise _wire_error(path, f"invalid type: {_describe(value)}, expected a boolean")
    elif rust in _INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wire_error(path, f"invalid type: {_describe(value)}, expected {rust}")
        low, high = _INT_RANGES[rust]
        if not low <= value <= high:
            raise _wire_error(path, f"invalid value: integer `{value}`, expected {rust}")
    elif rust == "f32":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wire_error(path, f"invalid type: {_describe(value)}, expected f32")
    elif rust == "string":
        if not isinstance(value, str):
            raise _wire_error(path, f"invalid type: {_describe(value)}, expected a string")
    elif rust == "strings":
        if not isinstance(value, list):
            raise _wire_error(path, f"invalid type: {_describe(value)}, expected a sequence")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise _wire_error(f"{path}[{i}]", f"invalid type: {_describe(item)}, expected a string")
    elif rust == "grammar":
        if not isinstance(value, dict):
            raise _wire_error(path, f"invalid type: {_describe(value)}, expected internally tagged enum")
        if "type" not in value:
            raise _wire_error(path, "missing field `type`")
        if value["type"] not in _GRAMMAR_VARIANTS:
            variants = ", ".join(f"`{v}`" for v in _GRAMMAR_VARIANTS)
            raise _wire_error(path, f"unknown variant `{value['type']}`, expected one of {variants}")
        if "value" not in value:
            raise _wire_error(path, "missing field `value`")
        if value["type"] == "regex" and not isinstance(value["value"], str):
            raise _wire_error(f"{path}.value", f"invalid type: {_describe(value['value'])}, expected a string")


def check_wire(body: Any) -> None:
    """Check a request body's JSON types as serde does for ``GenerateRequest`` (unknown keys are ignored, like
    the server). Raises ``ValidationError`` with axum's ``Failed to deserialize ...`` message."""
    if not isinstance(body, dict):
        raise _wire_error(".", f"invalid type: {_describe(body)}, expected struct GenerateRequest")
    if "inputs" not in body:
        raise _wire_error(".", "missing field `inputs`")
    if not isinstance(body["inputs"], str):
        raise _wire_error("inputs", f"invalid type: {_describe(body['inputs'])}, expected a string")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _wire_error("stream", f"invalid type: {_describe(body['stream'])}, expected a boolean")
    if "parameters" not in body:
        return  # serde default: default_parameters() (which turns do_sample on)
    params = body["parameters"]
    if not isinstance(params, dict):
        raise _wire_error("parameters", f"invalid type: {_describe(params)}, expected struct GenerateParameters")
    for name, value in params.items():
        rust = _WIRE_TYPES.get(name)
        if rust is None:
            continue
        if value is None and rust in ("bool", "strings"):
            raise _wire_error(f"parameters.{name}", f"invalid type: null, expected {_expected(rust)}")
        _check_wire_value(f"parameters.{name}", rust, value)


def _expected(rust: str) -> str:
    return {"bool": "a boolean", "strings": "a sequence"}.get(rust, rust)


def parameters_from_wire(params: dict[str, Any] | None) -> Parameters:
    """Build ``Parameters`` from a body that passed ``check_wire`` (nulls become server defaults)."""
    if params is None:
        return Parameters()
    known = {k: v for k, v in params.items() if k in _WIRE_TYPES and v is not None}
    return Parameters.model_validate(known)


# -- phases 2-6: the router ---------------------------------------------------------------------------------


def check_stream(p: Parameters) -> None:
    """``/generate_stream``'s own checks, made before the concurrency semaphore."""
    if (p.best_of if p.best_of is not None else 1) != 1:
        raise _fail("`best_of` != 1 is not supported when streaming tokens")
    if p.decoder_input_details:
        raise _fail("`decoder_input_details` == true is not supported when streaming tokens")


def check_best_of(p: Parameters, limits: Limits) -> None:
    """``/generate`` with ``best_of > 1``: made before the branches take semaphore permits."""
    best_of = p.best_of or 0
    if best_of <= 1 or limits.max_best_of is None:
        return
    if limits.max_best_of == 1:
        raise _fail("`best_of` != 1 is not allowed for this endpoint")
    if best_of > limits.max_best_of:
        raise _fail(f"`best_of` must be > 0 and <= {limits.max_best_of}. Given: {best_of}")


def check_parameters(p: Parameters, limits: Limits) -> None:
    """validation.rs steps 1-11, in order."""
    best_of = p.best_of if p.best_of is not None else 1
    if best_of > 1 and not p.sampling:
        raise _fail("you must use sampling when `best_of` is > 1")
    if (p.temperature if p.temperature is not None else 1.0) <= 0.0:
        raise _fail("`temperature` must be strictly positive")
    if (p.repetition_penalty if p.repetition_penalty is not None else 1.0) <= 0.0:
        raise _fail("`repetition_penalty` must be strictly positive")
    if not -2.0 <= (p.frequency_penalty if p.frequency_penalty is not None else 0.0) <= 2.0:
        raise _fail("`frequency_penalty` must be >= -2.0 and <= 2.0")
    if p.top_p is not None and (p.top_p <= 0.0 or p.top_p >= 1.0):
        raise _fail("`top_p` must be > 0.0 and < 1.0")
    if p.typical_p is not None and (p.typical_p <= 0.0 or p.typical_p >= 1.0):
        raise _fail("`typical_p` must be > 0.0 and < 1.0")
    if p.top_k is not None and p.top_k <= 0:
        raise _fail("`top_k` must be strictly positive")
    if p.max_new_tokens == 0:
        raise _fail("`max_new_tokens` must be strictly positive")
    if limits.max_stop_sequences is not None and len(p.stop) > limits.max_stop_sequences:
        raise _fail(f"`stop` supports up to {limits.max_stop_sequences} stop sequences. Given: {len(p.stop)}")
    if p.seed is not None and best_of > 1:
        raise _fail("`seed` must not be set when `best_of` > 1")
    top_n = p.top_n_tokens or 0
    if limits.max_top_n_tokens is not None and top_n > limits.max_top_n_tokens:
        raise _fail(f"`top_n_tokens` must be >= 0 and <= {limits.max_top_n_tokens}. Given: {top_n}")


def check_inputs(inputs: str, p: Parameters, limits: Limits, input_tokens: int | None = None) -> int | None:
    """Steps 12-14. ``input_tokens`` is the prompt's token count when known (a server knows it, a client
    does not). Returns the input length after truncation, when known."""
    if not inputs:
        raise _fail("`inputs` cannot be empty")
    if p.truncate is not None:
        max_input = limits.max_input_tokens
        if p.truncate == 0 or (max_input is not None and p.truncate > max_input):
            shown = max_input if max_input is not None else "the server's max_input_tokens"
            raise _fail(f"`truncate` must be strictly positive and less than {shown}. Given: {p.truncate}")
    if input_tokens is None:
        return None
    input_length = min(input_tokens, p.truncate) if p.truncate is not None else input_tokens
    if limits.max_total_tokens is not None:
        if p.max_new_tokens is not None:
            max_new = p.max_new_tokens
        else:
            max_new = max(limits.max_total_tokens - input_length, 0)
        chunk = min(max_new, DEFAULT_GENERATION_LENGTH)
        if input_length + chunk > limits.max_total_tokens:
            raise _fail(
                f"`inputs` tokens + `max_new_tokens` must be <= {limits.max_total_tokens}. "
                f"Given: {input_length} `inputs` tokens and {chunk} `max_new_tokens`"
            )
    if limits.max_input_tokens is not None and input_length > limits.max_input_tokens:
        raise _fail(f"`inputs` must have less than {limits.max_input_tokens} tokens. Given: {input_length}")
    return input_length


def grammar_schema(
    grammar: Grammar, check_schema: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any] | None:
    """The JSON schema a ``json``/``json_object``/``json_schema`` grammar constrains to (``None`` for regex).
    Raises ``ValidationError`` with the router's messages for values it refuses. ``check_schema`` is the
    server's JSON Schema metaschema check, which the router runs before the ``properties`` check."""
    if grammar.type == "regex":
        return None
    value = grammar.value
    if grammar.type == "json_schema":
        if not isinstance(value, dict) or "schema" not in value:
            raise _fail("grammar is not valid: missing field `schema`")
        value = value["schema"]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _fail(f"grammar is not valid: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(value, dict):
        raise _fail("grammar is not supported")
    if check_schema is not None:
        check_schema(value)
    if "properties" not in value:
        raise _fail("grammar is not valid: Grammar must have a 'properties' field")
    return value


def check_grammar(p: Parameters, limits: Limits) -> None:
    """Step 15. The metaschema check and the schema-to-regex compilation are the server's."""
    if p.grammar is None:
        return
    if not limits.grammar_support:
        raise _fail("grammar is not supported")
    grammar_schema(p.grammar)


def validate_request(
    inputs: str,
    p: Parameters,
    *,
    stream: bool,
    limits: Limits | None = None,
    input_tokens: int | None = None,
) -> None:
    """Every check, in the router's order: what a client runs before sending a request."""
    limits = limits if limits is not None else Limits.unknown()
    if stream:
        check_stream(p)
    else:
        check_best_of(p, limits)
    check_parameters(p, limits)
    check_inputs(inputs, p, limits, input_tokens)
    check_grammar(p, limits)
