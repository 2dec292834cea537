"""TGI's JSON on the wire, built from plain dicts and ``json.dumps`` (the hot path of a benchmark server).

Key order and omissions follow the router's structs (lib.rs): ``details`` is left out when not requested,
``best_of_sequences`` unless best_of > 1, ``top_tokens`` unless top_n_tokens > 0; stream events keep explicit
``null``s. ``tests/test_server_wire.py`` checks every shape against ``tgbatch.types`` (``to_wire()``).
"""

from __future__ import annotations

import json
from typing import Any

from tgbatch.errors import TGIError
from tgbatch.sim.model import Generation, PrefillTuple, TokenTuple

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def dumps(obj: Any) -> bytes:
    """Compact JSON, UTF-8, non-ASCII kept as is (as serde_json writes it)."""
    return _dumps(obj).encode("utf-8")


def token(t: TokenTuple) -> dict[str, Any]:
    return {"id": t[0], "text": t[1], "logprob": t[2], "special": t[3]}


def _prefill(pf: list[PrefillTuple]) -> list[dict[str, Any]]:
    return [{"id": t[0], "text": t[1], "logprob": t[2]} for t in pf]


def _top(top: list[list[TokenTuple]]) -> list[list[dict[str, Any]]]:
    return [[token(t) for t in step] for step in top]


def _best_of_sequence(gen: Generation, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "generated_text": prefix + gen.text,
        "finish_reason": gen.finish_reason,
        "generated_tokens": len(gen.tokens),
        "seed": gen.seed,
        "prefill": _prefill(gen.prefill),
        "tokens": [token(t) for t in gen.tokens],
    }
    if gen.top_tokens:
        out["top_tokens"] = _top(gen.top_tokens)
    return out


def response(best: Generation, others: list[Generation] | None, prefix: str, details: bool) -> dict[str, Any]:
    """A ``/generate`` response. ``others`` is the list of the losing best_of branches (``None`` when
    best_of <= 1); ``prefix`` is the prompt when return_full_text, else ""."""
    out: dict[str, Any] = {"generated_text": prefix + best.text}
    if details:
        d: dict[str, Any] = {
            "finish_reason": best.finish_reason,
            "generated_tokens": len(best.tokens),
            "seed": best.seed,
            "prefill": _prefill(best.prefill),
            "tokens": [token(t) for t in best.tokens],
        }
        if others is not None:
            d["best_of_sequences"] = [_best_of_sequence(g, prefix) for g in others]
        if best.top_tokens:
            d["top_tokens"] = _top(best.top_tokens)
        out["details"] = d
    return out


def stream_event(
    index: int,
    t: TokenTuple,
    top: list[TokenTuple] | None,
    generated_text: str | None = None,
    details: dict[str, Any] | None = None,
) -> bytes:
    """One SSE ``data:`` frame of ``/generate_stream``."""
    event: dict[str, Any] = {"index": index, "token": token(t)}
    if top:
        event["top_tokens"] = [token(x) for x in top]
    event["generated_text"] = generated_text
    event["details"] = details
    return b"data: " + dumps(event) + b"\n\n"


def stream_details(gen: Generation, input_length: int) -> dict[str, Any]:
    return {
        "finish_reason": gen.finish_reason,
        "generated_tokens": len(gen.tokens),
        "seed": gen.seed,
        "input_length": input_length,
    }


def error(err: TGIError) -> dict[str, Any]:
    """TGI's ``ErrorResponse``: exactly ``error`` and ``error_type``."""
    return {"error": err.message, "error_type": err.error_type}


def error_event(err: TGIError) -> bytes:
    return b"data: " + dumps(error(err)) + b"\n\n"
