"""The export formats: one table, name -> ``Format``, so a new format is one entry (``openai-batch`` goes here).

Shapes are the trainers' documented ones (TRL's dataset formats, axolotl's ``chat_template`` types):

- ``sft-messages``: ``{"messages": [...input messages, {"role": "assistant", "content": answer}]}``;
- ``sft-prompt-completion``: ``{"prompt": str, "completion": str}`` for /generate and completions jobs, the
  conversational ``{"prompt": [messages], "completion": [{"role": "assistant", ...}]}`` for chat jobs;
- ``dpo``: TRL's explicit-prompt preference format, ``{"prompt": [messages], "chosen": [assistant],
  "rejected": [assistant]}`` (plain strings for /generate and completions jobs: TRL's standard form);
- ``dpo-axolotl``: ``{"messages": [...], "chosen": {assistant}, "rejected": {assistant}}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tgbatch.errors import ExportError
from tgbatch.export.ranking import preference_pairs
from tgbatch.export.source import Scores
from tgbatch.job.location import Location

REASONING_AS = ("none", "reasoning_content", "thinking")
APIS = frozenset({"generate", "chat", "completions"})


@dataclass(frozen=True)
class ExportInput:
    """What a format builds from: the selected ``data/`` rows (as dicts) and the export's options."""

    root: Location
    api: str
    rows: list[dict[str, Any]]
    reasoning_as: str = "none"
    rank_by: str | None = None
    scores: Scores | None = None
    extra_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Format:
    """One ``--format``: its records (None: the rows themselves, ``jsonl`` / ``parquet``), the jobs it fits,
    and what to use instead on the others."""

    help: str
    build: Callable[[ExportInput], Iterator[dict[str, Any]]] | None = None
    apis: frozenset[str] = APIS
    instead: str = ""
    suffix: str = ".jsonl"
    options: frozenset[str] = field(default_factory=frozenset)


def assistant(row: dict[str, Any], reasoning_as: str) -> dict[str, Any]:
    """The row's answer as an assistant message, its reasoning where the trainer's chat template reads it."""
    message: dict[str, Any] = {"role": "assistant", "content": row.get("generated_text") or ""}
    if reasoning_as != "none":
        message[reasoning_as] = row.get("reasoning")
    return message


def _input_messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(m) for m in row["messages"]]


def _extra(inp: ExportInput, row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in inp.extra_columns}


def sft_messages(inp: ExportInput) -> Iterator[dict[str, Any]]:
    for row in inp.rows:
        yield {"messages": [*_input_messages(row), assistant(row, inp.reasoning_as)], **_extra(inp, row)}


def sft_prompt_completion(inp: ExportInput) -> Iterator[dict[str, Any]]:
    for row in inp.rows:
        if inp.api == "chat":
            record: dict[str, Any] = {
                "prompt": _input_messages(row),
                "completion": [assistant(row, inp.reasoning_as)],
            }
        else:
            record = {"prompt": row["prompt"], "completion": row.get("generated_text") or ""}
        yield {**record, **_extra(inp, row)}


def dpo(inp: ExportInput) -> Iterator[dict[str, Any]]:
    for chosen, rejected in preference_pairs(inp.rows, inp.rank_by, inp.scores):
        if inp.api == "chat":
            record: dict[str, Any] = {
                "prompt": _input_messages(chosen),
                "chosen": [assistant(chosen, inp.reasoning_as)],
                "rejected": [assistant(rejected, inp.reasoning_as)],
            }
        else:
            record = {
                "prompt": chosen["prompt"],
                "chosen": chosen.get("generated_text") or "",
                "rejected": rejected.get("generated_text") or "",
            }
        yield {**record, **_extra(inp, chosen)}


def dpo_axolotl(inp: ExportInput) -> Iterator[dict[str, Any]]:
    for chosen, rejected in preference_pairs(inp.rows, inp.rank_by, inp.scores):
        yield {
            "messages": _input_messages(chosen),
            "chosen": assistant(chosen, inp.reasoning_as),
            "rejected": assistant(rejected, inp.reasoning_as),
            **_extra(inp, chosen),
        }


_CHAT_ONLY = frozenset({"chat"})
FORMATS: dict[str, Format] = {
    "jsonl": Format("the rows, with the chosen columns, as JSON Lines"),
    "parquet": Format("the rows, with the chosen columns, as Parquet", suffix=".parquet"),
    "sft-messages": Format(
        "TRL / axolotl `messages` (chat jobs)",
        sft_messages,
        apis=_CHAT_ONLY,
        instead="it needs input messages (a chat job); "
        "use --format sft-prompt-completion (prompt and completion strings)",
        options=frozenset({"reasoning_as"}),
    ),
    "sft-prompt-completion": Format(
        "TRL `prompt` + `completion`", sft_prompt_completion, options=frozenset({"reasoning_as"})
    ),
    "dpo": Format(
        "TRL preference pairs (`prompt`, `chosen`, `rejected`)",
        dpo,
        options=frozenset({"reasoning_as", "rank_by"}),
    ),
    "dpo-axolotl": Format(
        "axolotl `chat_template.default` DPO (`messages`, `chosen`, `rejected` message dicts)",
        dpo_axolotl,
        apis=_CHAT_ONLY,
        instead="it needs input messages (a chat job); "
        "use --format dpo (TRL's standard form: prompt, chosen and rejected strings)",
        options=frozenset({"reasoning_as", "rank_by"}),
    ),
}


def get_format(name: str, api: str) -> Format:
    """The format ``name``, checked against the job's api: exit 2 naming what to use instead."""
    fmt = FORMATS.get(name)
    if fmt is None:
        raise ExportError(
            f"--format {name!r}: unknown format; choose one of {', '.join(FORMATS)}, openai-batch"
        )
    if api not in fmt.apis:
        raise ExportError(f"--format {name} does not fit this {api} job: {fmt.instead}")
    return fmt
