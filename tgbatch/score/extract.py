"""Taking the answer out of a generation: reasoning removed first, then the extraction mode.

A mode that finds nothing gives ``INVALID`` ("[invalid]", lm-evaluation-harness's fallback): it matches no gold,
so the sample is scored wrong, not skipped."""

from __future__ import annotations

import re

from tgbatch.score.spec import ExtractMode, RegexExtract

INVALID = "[invalid]"
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_NUMBER = re.compile(r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")
_ANSWER_LETTER = re.compile(r"answer\s*(?:is)?\s*[:=]?\s*\(?([A-J])\b\)?", re.IGNORECASE)
_LETTER = re.compile(r"(?<![A-Za-z])\(?([A-J])\)?(?![A-Za-z])")
_BOXED = "\\boxed{"


def strip_reasoning(text: str) -> str:
    """The text without ``<think>...</think>`` blocks; an unclosed ``<think>`` drops the rest, and a lone
    ``</think>`` (the opening tag was in the prompt) drops everything before it."""
    text = _THINK.sub("", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return text


def extract(text: str, mode: ExtractMode | RegexExtract) -> str:
    """The answer in ``text`` (reasoning already stripped) by ``mode``, or ``INVALID``."""
    if isinstance(mode, RegexExtract):
        match = re.search(mode.regex, text)
        found = match.group(mode.group) if match else None
        return INVALID if found is None else found
    if mode == "none":
        return text
    if mode == "last_number":
        numbers = _NUMBER.findall(text)
        return numbers[-1].replace(",", "") if numbers else INVALID
    if mode == "boxed":
        return _last_boxed(text)
    said = _ANSWER_LETTER.findall(text)
    if said:
        return said[-1].upper()
    letters = _LETTER.findall(text)
    return letters[-1] if letters else INVALID


def _last_boxed(text: str) -> str:
    """The content of the last ``\\boxed{...}``, nested braces balanced."""
    start = text.rfind(_BOXED)
    if start < 0:
        return INVALID
    depth, begin = 1, start + len(_BOXED)
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i]
    return INVALID
