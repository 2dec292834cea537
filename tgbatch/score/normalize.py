"""The normalisers, applied in the order listed to the extracted answer and to every gold (as lighteval and
SQuAD's evaluation do: lower case, punctuation and English articles removed, whitespace collapsed)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

from tgbatch.score.spec import Normalizer

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)


def strip_punctuation(text: str) -> str:
    """Every Unicode punctuation character removed (ASCII ``!"#$%...`` and the others, e.g. curly quotes)."""
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith("P") and ch not in "$+<=>^`|~")


def strip_articles(text: str) -> str:
    return _ARTICLES.sub(" ", text)


def collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


STEPS: dict[str, Callable[[str], str]] = {
    "strip": str.strip,
    "lower": str.lower,
    "strip_punctuation": strip_punctuation,
    "strip_articles": strip_articles,
    "collapse_whitespace": collapse_whitespace,
}


def normalize(text: str, steps: Sequence[Normalizer]) -> str:
    for step in steps:
        text = STEPS[step](text)
    return text
