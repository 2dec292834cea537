"""The answers of the OpenAI routes, per flavour, as plain dicts in each server's key order.

TGI (lib.rs ``ChatCompletion``, ``ChatCompletionChunk``, ``CompletionFinal``): id "", ``system_fingerprint``
"{version}-native", logprobs without ``bytes``, tool-call ``arguments`` as a JSON string (since v3.2), the
matched stop string kept in the text. vLLM (chat_completion/protocol.py): ``chatcmpl-`` ids, ``reasoning``,
``stop_reason``, ``refusal``/``annotations``/``audio``/``function_call`` nulls. SGLang: ``reasoning_content``,
``matched_stop`` (the EOS id or the stop string), ``usage.reasoning_tokens``.
"""

from __future__ import annotations

import secrets
from typing import Any

from tgbatch.sim.config import TGI_VERSION
from tgbatch.sim.model import TokenTuple
from tgbatch.sim.openai.engine import Output, Step
from tgbatch.sim.openai.flavors import Flavor
from tgbatch.sim.openai.requests import Job
from tgbatch.sim.vocab import EOS_ID

FINGERPRINT = f"{TGI_VERSION}-native"


def new_id(flavor: Flavor, chat: bool) -> str:
    if flavor.name == "tgi":
        return ""
    if flavor.name == "sglang":
        return secrets.token_hex(16)
    return ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(16)


def head(flavor: Flavor, job: Job, rid: str, created: int, obj: str) -> dict[str, Any]:
    out: dict[str, Any] = {"object": obj, "id": rid} if flavor.name == "tgi" else {"id": rid, "object": obj}
    out["created"] = created
    out["model"] = job.model
    if flavor.name == "tgi":
        out["system_fingerprint"] = FINGERPRINT
    return out


def visible_text(flavor: Flavor, out: Output, *, chat: bool = True) -> str:
    """The answer's text: TGI carries the thinking inline and keeps a matched stop string; the others trim it.
    Completions routes have no reasoning parser on any server: the thinking stays in the text there."""
    if flavor.reasoning_field is None:
        return out.inline_text
    text = out.text if chat else out.inline_text
    if out.stop is not None and not flavor.keeps_stop:
        text = text[: len(text) - len(out.stop)]
    return text


def _logprob(flavor: Flavor, t: TokenTuple) -> dict[str, Any]:
    if flavor.name == "tgi":
        return {"token": t[1], "logprob": t[2]}
    return {"token": t[1], "logprob": t[2], "bytes": list(t[1].encode("utf-8"))}


def chat_logprobs(flavor: Flavor, steps: list[Step]) -> dict[str, Any]:
    content = []
    for s in steps:
        entry = _logprob(flavor, s.token)
        entry["top_logprobs"] = [_logprob(flavor, t) for t in s.top or []]
        content.append(entry)
    return {"content": content}


def completion_logprobs(steps: list[Step], offset: int) -> dict[str, Any]:
    """The legacy completions shape (vLLM, SGLang): parallel lists and ``{token: logprob}`` maps."""
    tokens, lps, tops, offsets = [], [], [], []
    for s in steps:
        tokens.append(s.token[1])
        lps.append(s.token[2])
        tops.append({t[1]: t[2] for t in s.top or []} or None)
        offsets.append(offset)
        offset += len(s.token[1])
    return {"text_offset": offsets, "token_logprobs": lps, "tokens": tokens, "top_logprobs": tops}


def tool_call(flavor: Flavor, name: str, arguments: str) -> dict[str, Any]:
    if flavor.name == "tgi":
        function = {"description": None, "name": name, "arguments": arguments}
        return {"id": "0", "type": "function", "function": function}
    prefix = "chatcmpl-tool-" if flavor.name == "vllm" else "call_"
    return {
        "id": prefix + secrets.token_hex(12),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def finish(flavor: Flavor, job: Job, out: Output) -> str:
    if job.tool is not None and out.finish == "eos_token":
        return flavor.tool_finish
    if not job.chat and flavor.name == "tgi":
        return out.finish  # the completions route writes the router's own names (eos_token, stop_sequence)
    return flavor.finish_reason(out.finish)


def stop_fields(flavor: Flavor, out: Output) -> dict[str, Any]:
    if flavor.name == "vllm":
        return {"stop_reason": out.stop}
    if flavor.name == "sglang":
        matched: int | str | None = out.stop if out.stop is not None else EOS_ID if out.finish == "eos_token" else None
        return {"matched_stop": matched}
    return {}


def message(flavor: Flavor, job: Job, out: Output) -> dict[str, Any]:
    text = visible_text(flavor, out)
    calls = [tool_call(flavor, job.tool, text)] if job.tool is not None else None
    if flavor.name == "tgi":
        return {"role": "assistant", "tool_calls": calls} if calls else {"role": "assistant", "content": text}
    content = None if calls else text
    reasoning = out.reasoning_text if any(s.part == "think" for s in out.steps) else None
    if flavor.name == "sglang":
        return {"role": "assistant", "content": content, "reasoning_content": reasoning, "tool_calls": calls}
    msg: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": None}
    msg |= {"audio": None, "function_call": None}
    if calls:
        msg["tool_calls"] = calls
    msg["reasoning"] = reasoning
    return msg


def usage(flavor: Flavor, outputs: list[Output], n: int) -> dict[str, Any]:
    prompt = sum(o.prompt_tokens for o in outputs[::n])
    completion = sum(o.completion_tokens for o in outputs)
    if flavor.name == "tgi":
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    out: dict[str, Any] = {"prompt_tokens": prompt, "total_tokens": prompt + completion}
    out |= {"completion_tokens": completion, "prompt_tokens_details": None}
    if flavor.name == "sglang":
        out["reasoning_tokens"] = sum(sum(1 for s in o.steps if s.part != "answer") for o in outputs)
    return out


def chat_response(flavor: Flavor, job: Job, outputs: list[Output], created: int) -> dict[str, Any]:
    choices = []
    for out in outputs:
        choice: dict[str, Any] = {"index": out.index, "message": message(flavor, job, out)}
        choice["logprobs"] = chat_logprobs(flavor, out.steps) if job.logprobs else None
        choice["finish_reason"] = finish(flavor, job, out)
        choice |= stop_fields(flavor, out)
        choices.append(choice)
    body = head(flavor, job, new_id(flavor, True), created, "chat.completion")
    body["choices"] = choices
    body["usage"] = usage(flavor, outputs, job.n)
    if flavor.name == "vllm":
        body |= {"service_tier": None, "system_fingerprint": None, "prompt_logprobs": None, "kv_transfer_params": None}
    return body


def completion_response(flavor: Flavor, job: Job, outputs: list[Output], created: int) -> dict[str, Any]:
    choices = []
    for out in outputs:
        choice: dict[str, Any] = {"index": out.index, "text": visible_text(flavor, out, chat=False)}
        choice["logprobs"] = completion_logprobs(out.steps, 0) if job.logprobs else None
        choice["finish_reason"] = finish(flavor, job, out)
        choice |= stop_fields(flavor, out)
        choices.append(choice)
    body = head(flavor, job, new_id(flavor, False), created, "text_completion")
    body["choices"] = choices
    body["usage"] = usage(flavor, outputs, job.n)
    return body
