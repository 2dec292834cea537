"""The simulated model's chat template (ChatML-like) and the tool prompt: what decides ``usage.prompt_tokens``
of a chat request, counted with the simulator's tokenizer."""

from __future__ import annotations

import json
from typing import Any

BOS = "<s>"
#: what TGI appends before the tools (lib.rs default_tool_prompt)
TOOL_PROMPT = "\nGiven the functions available, please respond with a JSON for a function call with its proper arguments that best answers the given prompt. Respond in the format {name: function name, parameters: dictionary of argument name and its value}.Do not use variables.\n"  # noqa: E501


class TemplateError(ValueError):
    """A message the template cannot render (its text names the message and the field)."""


def _content(i: int, message: Any) -> str:
    if not isinstance(message, dict):
        raise TemplateError(f"messages[{i}] must be an object with `role` and `content`")
    content = message.get("content")
    if content is None:
        calls = message.get("tool_calls")
        return json.dumps(calls, separators=(",", ":")) if calls is not None else ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") in ("image_url", "input_audio"):
                raise TemplateError(f"messages[{i}]: {part['type']} content is not supported by the simulated model")
            else:
                raise TemplateError(f"messages[{i}].content: each part must be {{'type': 'text', 'text': ...}}")
        return "".join(parts)
    raise TemplateError(f"messages[{i}].content must be a string or a list of content parts")


def render(messages: Any, tools: list[dict[str, Any]] | None = None) -> str:
    """``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, then the generation prompt. Tools, when the
    answer must call one, go into a system turn as TGI's template input does."""
    if not isinstance(messages, list) or not messages:
        raise TemplateError("`messages` must be a non-empty list")
    out = []
    if tools:
        out.append(f"<|im_start|>system\n{json.dumps(tools, separators=(',', ':'))}{TOOL_PROMPT}<|im_end|>\n")
    for i, message in enumerate(messages):
        text = _content(i, message)
        role = message.get("role")
        if not isinstance(role, str):
            raise TemplateError(f"messages[{i}].role must be a string")
        out.append(f"<|im_start|>{role}\n{text}<|im_end|>\n")
    out.append("<|im_start|>assistant\n")
    return "".join(out)
