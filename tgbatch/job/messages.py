"""Chat input: the job's ``messages:`` (each content a strict Jinja2 template of the row, as ``template`` is) and
a ``messages_column`` (each row's value a list of ``{role, content}``: an Arrow list<struct>, Python lists from
JSON Lines, or JSON text from CSV), checked row by row: a row whose value is not a valid message list is that
row's ``TemplateError`` (recorded in ``errors/``, the job goes on)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tgbatch.errors import TemplateError
from tgbatch.job.template import NullPolicy, PromptTemplate

ROLES = ("system", "developer", "user", "assistant", "tool")
Role = Literal["system", "developer", "user", "assistant", "tool"]
Message = Mapping[str, Any]


class MessageSpec(BaseModel):
    """One message of the job's ``messages:``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role = Field(description="system, developer, user, assistant or tool.")
    content: str = Field(description="A Jinja2 template of the row (strict, as `template`).")


class MessagesTemplate:
    """The job's messages, each content compiled as a strict template (``BadTemplateError`` naming the
    message when one does not compile or names an unknown column)."""

    def __init__(self, messages: list[MessageSpec], nulls: NullPolicy = "error") -> None:
        self.roles = [m.role for m in messages]
        self.templates = [
            PromptTemplate(m.content, nulls, label=f"messages[{i}].content") for i, m in enumerate(messages)
        ]

    @property
    def uses_whole_row(self) -> bool:
        return any(t.uses_whole_row for t in self.templates)

    def columns_used(self) -> set[str]:
        return set().union(*(t.columns_used() for t in self.templates))

    def check_columns(self, columns: list[str]) -> None:
        for template in self.templates:
            template.check_columns(columns)

    def render(self, row: dict[str, Any], row_id: str) -> tuple[Message, ...]:
        return tuple(
            {"role": role, "content": t.render(row, row_id)} for role, t in zip(self.roles, self.templates, strict=True)
        )


def parse_messages(value: Any, row_id: str, column: str) -> tuple[Message, ...]:
    """A row's ``messages_column`` value as a message list; ``TemplateError`` naming the row and what is wrong."""

    def bad(what: str) -> TemplateError:
        return TemplateError(f"messages_column: {column!r} in row {row_id!r} {what}")

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise bad(f"is text but not JSON ({exc}); expected a list of {{role, content}}") from None
    if not isinstance(value, list | tuple):
        raise bad(f"is {_kind(value)}, not a list of {{role, content}} messages")
    if not value:
        raise bad("is an empty list: a chat request needs at least one message")
    return tuple(_message(m, i, bad) for i, m in enumerate(value))


def _message(item: Any, i: int, bad: Any) -> Message:
    if not isinstance(item, Mapping):
        raise bad(f"message {i} is {_kind(item)}, not a {{role, content}} mapping")
    role, content = item.get("role"), item.get("content")
    if role is None or "role" not in item:
        raise bad(f"message {i} has no role")
    if role not in ROLES:
        raise bad(f"message {i} has the unknown role {role!r} (known: {', '.join(ROLES)})")
    if not isinstance(content, str):
        what = "no content" if content is None else f"content that is {_kind(content)}, not text"
        raise bad(f"message {i} ({role}) has {what}")
    # extra keys a list<struct> fills with nulls (name, tool_call_id, ...) are left out rather than sent as null
    return {k: v for k, v in item.items() if v is not None}


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__} ({str(value)[:40]!r})"
