"""The SSE chunks of a streamed chat or completions answer, per flavour, step by step: each generated token
gives one step (the route waits the decode time before it), and the stream ends with the usage chunk when
``stream_options.include_usage`` asks for it, then ``data: [DONE]``.

TGI (chat.rs ``ChatState``): one chunk per token with ``delta: {role, content}``; an EOS ends with an empty
content and the finish reason; usage in a separate last chunk with ``choices: []``. vLLM and SGLang open with a
role chunk, put reasoning in ``delta.reasoning`` / ``delta.reasoning_content`` and close each choice with a
finish chunk; a matched stop string is held back, never sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tgbatch.sim import wire
from tgbatch.sim.openai import shape
from tgbatch.sim.openai.engine import Output, Step
from tgbatch.sim.openai.flavors import Flavor
from tgbatch.sim.openai.requests import Job

DONE = b"data: [DONE]\n\n"
_EOS_LOGPROB = {"token": "</s>", "logprob": -0.1, "top_logprobs": []}


def frame(obj: Any) -> bytes:
    return b"data: " + wire.dumps(obj) + b"\n\n"


def _pieces(flavor: Flavor, out: Output, *, chat: bool) -> list[tuple[Step, str]]:
    """Each step with the text it adds, cut so that the pieces add up to the visible text (a trimmed stop
    string is never sent)."""
    inline = flavor.reasoning_field is None
    answer = shape.visible_text(flavor, out, chat=chat)
    pos = 0
    pieces = []
    for s in out.steps:
        if inline or (chat and s.part != "answer"):  # completions: the thinking is text like the rest
            pieces.append((s, s.token[1]))
            continue
        piece = answer[pos : pos + len(s.token[1])]
        pos += len(piece)
        pieces.append((s, piece))
    return pieces


class _Chunks:
    def __init__(self, flavor: Flavor, job: Job, created: int) -> None:
        self.flavor = flavor
        self.job = job
        self.created = created
        self.head = shape.head(flavor, job, shape.new_id(flavor, job.chat), created, "")

    def chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None, last: bool = False) -> bytes:
        obj = dict(self.head)
        obj["object"] = "chat.completion.chunk" if self.job.chat else "text_completion"
        obj["choices"] = choices
        # vLLM leaves usage out until the end; TGI's completion Chunk has none (its CompletionFinal has it)
        tgi_chunk = self.flavor.name == "tgi" and not self.job.chat
        if usage is not None or not (self.flavor.name == "vllm" or tgi_chunk):
            obj["usage"] = usage
        return frame(obj)

    def delta(self, step: Step, piece: str, first: bool) -> dict[str, Any] | None:
        """A chat delta for one step, or None when the step sends nothing (a marker on a parsing server)."""
        f = self.flavor
        if self.job.tool is not None and f.name == "tgi":
            name = self.job.tool if first else None
            call = {"index": 0, "id": "0", "type": "function", "function": {"name": name, "arguments": piece}}
            return {"role": "assistant", "tool_calls": [call]}
        if self.job.tool is not None:
            call = {"index": 0, "function": {"arguments": piece}}
            return {"tool_calls": [call]}
        if f.name == "tgi":
            return {"role": "assistant", "content": piece}
        if step.part == "marker":
            return None
        if step.part == "think":
            return {f.reasoning_field or "reasoning": piece}
        return {"content": piece}


def _opening(c: _Chunks, out: Output) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": "assistant", "content": ""}
    if c.job.tool is not None:
        call = shape.tool_call(c.flavor, c.job.tool, "")
        delta = {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **call}]}
    return {"index": out.index, "delta": delta, "logprobs": None, "finish_reason": None}


def _closing(c: _Chunks, out: Output) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": out.index}
    if c.job.chat:
        choice["delta"] = {"content": ""} if c.flavor.name != "tgi" else {"role": "assistant", "content": ""}
        choice["logprobs"] = {"content": [_EOS_LOGPROB]} if c.job.logprobs and c.flavor.name == "tgi" else None
    else:
        choice |= {"text": "", "logprobs": None}
    choice["finish_reason"] = shape.finish(c.flavor, c.job, out)
    return choice | shape.stop_fields(c.flavor, out)


def _step_choice(c: _Chunks, out: Output, step: Step, piece: str, k: int, last: bool) -> dict[str, Any] | None:
    job = c.job
    if job.chat:
        delta = c.delta(step, piece, k == 0)
        if delta is None:
            return None
        choice: dict[str, Any] = {"index": out.index, "delta": delta}
        choice["logprobs"] = shape.chat_logprobs(c.flavor, [step]) if job.logprobs else None
    else:
        choice = {"index": out.index, "text": piece}
        choice["logprobs"] = shape.completion_logprobs([step], 0) if job.logprobs else None
    # TGI puts the finish reason on the last token unless the EOS (its own empty chunk) ended the answer
    ends = last and c.flavor.name == "tgi" and out.finish != "eos_token"
    choice["finish_reason"] = (
        shape.finish(c.flavor, job, out) if ends else "" if not job.chat and c.flavor.name == "tgi" else None
    )
    if c.flavor.name != "tgi":
        choice |= {"stop_reason": None} if c.flavor.name == "vllm" else {"matched_stop": None}
    return choice


def events(flavor: Flavor, job: Job, outputs: list[Output], created: int) -> Iterator[tuple[bytes, bool]]:
    """``(frame, is_token)``: a token frame comes after one decode step."""
    c = _Chunks(flavor, job, created)
    if flavor.name != "tgi" and job.chat:
        yield c.chunk([_opening(c, o) for o in outputs]), False
    pieces = [_pieces(flavor, o, chat=job.chat) for o in outputs]
    # TGI's completions stream ends each prompt with a CompletionFinal carrying that prompt's usage
    tgi_completion = flavor.name == "tgi" and not job.chat
    longest = max((len(p) for p in pieces), default=0)
    for k in range(longest):
        for out, steps in zip(outputs, pieces, strict=True):
            if k >= len(steps):
                continue
            step, piece = steps[k]
            last = k == len(steps) - 1
            choice = _step_choice(c, out, step, piece, k, last)
            final = tgi_completion and last and out.finish != "eos_token"
            usage = shape.usage(flavor, [out], 1) if final else None
            yield (c.chunk([choice], usage) if choice is not None else b""), True
    for out, steps in zip(outputs, pieces, strict=True):
        if flavor.name != "tgi" or out.finish == "eos_token" or not steps:
            usage = shape.usage(flavor, [out], 1) if tgi_completion else None
            yield c.chunk([_closing(c, out)], usage), out.finish == "eos_token"
    if job.include_usage and not tgi_completion:
        yield c.chunk([], shape.usage(flavor, outputs, job.n)), False
    yield DONE, False
