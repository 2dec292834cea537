"""The ``score:`` section of a job (and of ``tgbatch score --spec FILE``): pydantic, unknown keys refused.

Imports nothing from tgbatch: the job spec reads it, and scoring's other modules build on it."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ExtractMode = Literal["none", "last_number", "boxed", "choice_letter"]
Normalizer = Literal["strip", "lower", "strip_punctuation", "strip_articles", "collapse_whitespace"]
MetricName = Literal["exact_match", "contains", "numeric", "json_valid", "regex_match"]
#: the metrics that compare the answer with the reference column
NEEDS_REFERENCE = ("exact_match", "contains", "numeric")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegexExtract(_Strict):
    """Extract the first match of a regular expression (``"[invalid]"`` when nothing matches)."""

    regex: str = Field(min_length=1, description="A Python regular expression searched in the answer.")
    group: int | str = Field(1, description="The group to take: a number (0 = the whole match) or a name.")

    @model_validator(mode="after")
    def _check(self) -> RegexExtract:
        try:
            compiled = re.compile(self.regex)
        except re.error as exc:
            raise ValueError(f"regex: {self.regex!r} does not compile: {exc}") from None
        if isinstance(self.group, int) and not 0 <= self.group <= compiled.groups:
            raise ValueError(f"group: {self.group} but the regex has {compiled.groups} group(s)")
        if isinstance(self.group, str) and self.group not in compiled.groupindex:
            raise ValueError(f"group: {self.group!r} is not a named group of the regex")
        return self


class ScoreSpec(_Strict):
    """How answers are scored: the reference column, extraction, normalisers, metrics and k of pass@k/maj@k."""

    reference: str | None = Field(
        None,
        min_length=1,
        description="The column holding the gold answer: one string, or a list of acceptable strings. Needed by "
        "exact_match, contains and numeric.",
    )
    extract: ExtractMode | RegexExtract = Field(
        "none",
        description="none (the whole answer), last_number, boxed (the last \\boxed{...}), choice_letter (A-J), "
        'or {regex: ..., group: 1}. No match gives "[invalid]".',
    )
    normalize: list[Normalizer] = Field(
        default_factory=lambda: ["strip"],  # type: ignore[arg-type]
        description="Applied in order to the extracted answer and to each gold: strip, lower, strip_punctuation, "
        "strip_articles, collapse_whitespace.",
    )
    metrics: list[MetricName] = Field(
        default_factory=lambda: ["exact_match"],  # type: ignore[arg-type]
        min_length=1,
        description="exact_match, contains (a gold inside the answer), numeric (equal within `tolerance`), "
        "json_valid (the extracted text parses as JSON), regex_match (the answer matches `pattern`). pass@k and "
        "maj@k use the first.",
    )
    tolerance: float = Field(1e-6, ge=0, description="numeric: the largest absolute difference counted equal.")
    pattern: str | None = Field(None, min_length=1, description="regex_match: the regular expression searched.")
    k: list[int] = Field(
        default_factory=list,
        description="pass@k (unbiased estimator) and maj@k for each k; each needs samples >= k.",
    )

    @field_validator("k")
    @classmethod
    def _check_k(cls, ks: list[int]) -> list[int]:
        bad = [k for k in ks if not 1 <= k <= 10_000]
        if bad:
            raise ValueError(f"each k must be from 1 to 10000 (got {bad[0]})")
        return sorted(set(ks))

    @field_validator("metrics")
    @classmethod
    def _no_repeat(cls, metrics: list[str]) -> list[str]:
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"lists {next(m for m in metrics if metrics.count(m) > 1)!r} twice")
        return metrics

    @model_validator(mode="after")
    def _check(self) -> ScoreSpec:
        needing = [m for m in self.metrics if m in NEEDS_REFERENCE]
        if needing and self.reference is None:
            raise ValueError(f"metric {needing[0]} compares with a gold answer: set `reference: COLUMN`")
        if "regex_match" in self.metrics:
            if self.pattern is None:
                raise ValueError("metric regex_match needs `pattern: REGEX` (the expression the answer must match)")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern: {self.pattern!r} does not compile: {exc}") from None
        return self

    def check_samples(self, samples: int) -> None:
        """Raise ``ValueError`` when a k exceeds the samples per prompt."""
        too_big = [k for k in self.k if k > samples]
        if too_big:
            raise ValueError(
                f"score.k: {too_big[0]} needs at least {too_big[0]} samples per prompt (the job has samples: "
                f"{samples}); lower k or raise samples"
            )
