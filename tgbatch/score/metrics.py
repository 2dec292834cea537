"""Scoring one sample: its answer extracted and normalised, then each metric (1.0 right, 0.0 wrong) against
the row's golds (any one acceptable gold makes it right)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from tgbatch.score.extract import INVALID, extract, strip_reasoning
from tgbatch.score.normalize import normalize
from tgbatch.score.spec import ScoreSpec

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass(frozen=True)
class SampleScore:
    extracted: str
    #: the normalised answer: samples with the same one vote together in maj@k
    answer: str
    values: dict[str, float]


def golds_of(value: Any) -> list[str] | None:
    """The acceptable answers in a reference cell: a string, a number, or a list of them; ``None`` when absent."""
    if value is None:
        return None
    items = list(value) if isinstance(value, list | tuple) else [value]
    golds = [_text(v) for v in items if v is not None]
    return golds or None


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Scorer:
    """Scores generated texts by one ``ScoreSpec``."""

    def __init__(self, spec: ScoreSpec) -> None:
        self.spec = spec
        self._pattern = re.compile(spec.pattern) if spec.pattern is not None else None

    def score(self, text: str, golds: list[str] | None) -> SampleScore:
        """``text``: the generated text (its reasoning is removed here); ``golds``: from ``golds_of``."""
        extracted = extract(strip_reasoning(text), self.spec.extract)
        answer = normalize(extracted, self.spec.normalize)
        norm_golds = [normalize(g, self.spec.normalize) for g in golds or []]
        values: dict[str, float] = {m: float(self._metric(m, extracted, answer, norm_golds)) for m in self.spec.metrics}
        return SampleScore(extracted, answer, values)

    def _metric(self, name: str, extracted: str, answer: str, golds: list[str]) -> bool:
        if name == "json_valid":
            return _is_json(extracted)
        if name == "regex_match":
            assert self._pattern is not None  # ScoreSpec requires `pattern` with regex_match
            return extracted != INVALID and self._pattern.search(extracted) is not None
        if extracted == INVALID:
            return False
        if name == "exact_match":
            return answer in golds
        if name == "contains":
            return any(g and g in answer for g in golds)
        number = parse_number(answer)
        return number is not None and any(
            (g := parse_number(gold)) is not None and abs(number - g) <= self.spec.tolerance for gold in golds
        )


def parse_number(text: str) -> float | None:
    """A number written plainly, with thousands commas, a leading ``$`` or a trailing ``%`` or ``.``."""
    cleaned = text.strip().replace(",", "").removeprefix("$").removesuffix("%").rstrip(".").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _is_json(text: str) -> bool:
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        json.loads(body)
    except ValueError:
        return False
    return True
