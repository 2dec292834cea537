"""The job's fingerprint: a digest of what changes results, so a folder is only resumed by the same job.

Covered: the dataset's identity (where it is, id column, carried columns), the template text, the generate
parameters, the seed policy and the samples per prompt; for chat and completions jobs also the api, the messages
(or their column) and the model (and the parameters include ``extra_body``). A /generate job's parts are the
five it always had, so its fingerprint is what it was. Not covered (a resume may change them): the endpoint,
concurrency, timeouts, retries, shard size, commit interval, limit, the details level, the job's name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

VERSION = "tgbatch-fingerprint/1"
PART_NAMES = {
    "dataset": "the dataset (path, split, config, id_column or carried columns)",
    "template": "the template",
    "parameters": "the parameters",
    "seed": "the seed policy",
    "samples": "samples per prompt",
    "api": "endpoint.api",
    "messages": "the messages (or messages_column)",
    "model": "endpoint.model",
}


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    digest: str
    parts: dict[str, str]

    @classmethod
    def of(
        cls,
        *,
        dataset: dict[str, Any],
        template: str | list[str] | None,
        parameters: dict[str, Any],
        seed: dict[str, Any],
        samples: int,
        chat: dict[str, Any] | None = None,
    ) -> Fingerprint:
        """``chat``: a chat or completions job's own parts (``api``, ``messages``, ``model``); ``template`` is
        ``None`` for a job given by messages."""
        parts = {"dataset": _digest(dataset)}
        if template is not None:
            parts["template"] = _digest(template)
        parts.update(parameters=_digest(parameters), seed=_digest(seed), samples=_digest(samples))
        parts.update({name: _digest(value) for name, value in (chat or {}).items()})
        return cls(_digest([VERSION, parts])[:32], parts)

    def differences(self, other_parts: dict[str, str]) -> list[str]:
        """What differs from another fingerprint's parts, in words."""
        return [PART_NAMES[name] for name, value in self.parts.items() if other_parts.get(name) != value]
