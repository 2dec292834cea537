"""From a row to a request's input: a prompt (``/generate``, completions) or chat messages, by one small strategy
per way of giving the input, so the runner renders without knowing which api the job speaks.

- ``PromptRenderer``: ``template`` -> the prompt;
- ``UserMessageRenderer``: ``template`` on a chat job -> one user message;
- ``MessagesRenderer``: ``messages:`` -> each content rendered;
- ``ColumnRenderer``: ``messages_column`` -> the row's message list, checked;
- ``BatchLineRenderer``: a line of an OpenAI Batch file -> its body, sent as it is (``Rendered.params``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tgbatch.errors import BadTemplateError
from tgbatch.job.messages import Message, MessagesTemplate, parse_messages
from tgbatch.job.spec import LoadedJob
from tgbatch.job.template import PromptTemplate


@dataclass(frozen=True, slots=True)
class Rendered:
    """A row's input: exactly one of ``prompt`` and ``messages`` (what the output records), and ``params``, a
    request body of its own (an OpenAI Batch line's) that the backend sends over the job's parameters."""

    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    params: Mapping[str, Any] | None = None

    def show(self) -> str:
        """For people (``tgbatch validate``): the prompt, or one ``[role] content`` block per message."""
        if self.messages is None:
            return self.prompt or ""
        return "\n".join(f"[{m['role']}] {m.get('content')}" for m in self.messages)


class Renderer(Protocol):
    """Turns a row into its input; ``TemplateError`` when this row cannot be (the job goes on)."""

    #: the output column holding the rendered input: ``prompt`` or ``messages``
    input_column: str
    #: rendering runs the job's templates: a failure on the very first rows is the template's, not the data's
    templated: bool

    @property
    def uses_whole_row(self) -> bool: ...

    def columns_used(self) -> set[str]: ...

    def check_columns(self, columns: list[str]) -> None: ...

    def render(self, row: dict[str, Any], row_id: str) -> Rendered: ...


class PromptRenderer:
    input_column = "prompt"
    templated = True

    def __init__(self, template: PromptTemplate) -> None:
        self.template = template

    @property
    def uses_whole_row(self) -> bool:
        return self.template.uses_whole_row

    def columns_used(self) -> set[str]:
        return self.template.columns_used()

    def check_columns(self, columns: list[str]) -> None:
        self.template.check_columns(columns)

    def render(self, row: dict[str, Any], row_id: str) -> Rendered:
        return Rendered(prompt=self.template.render(row, row_id))


class UserMessageRenderer(PromptRenderer):
    input_column = "messages"

    def render(self, row: dict[str, Any], row_id: str) -> Rendered:
        return Rendered(messages=({"role": "user", "content": self.template.render(row, row_id)},))


class MessagesRenderer:
    input_column = "messages"
    templated = True

    def __init__(self, messages: MessagesTemplate) -> None:
        self.messages = messages

    @property
    def uses_whole_row(self) -> bool:
        return self.messages.uses_whole_row

    def columns_used(self) -> set[str]:
        return self.messages.columns_used()

    def check_columns(self, columns: list[str]) -> None:
        self.messages.check_columns(columns)

    def render(self, row: dict[str, Any], row_id: str) -> Rendered:
        return Rendered(messages=self.messages.render(row, row_id))


class ColumnRenderer:
    input_column = "messages"
    templated = False

    def __init__(self, column: str) -> None:
        self.column = column

    @property
    def uses_whole_row(self) -> bool:
        return False

    def columns_used(self) -> set[str]:
        return {self.column}

    def check_columns(self, columns: list[str]) -> None:
        if self.column not in columns:
            raise BadTemplateError(
                f"messages_column: {self.column!r} is not a column of the dataset; its columns are: "
                + ", ".join(columns)
            )

    def render(self, row: dict[str, Any], row_id: str) -> Rendered:
        return Rendered(messages=parse_messages(row.get(self.column), row_id, self.column))


class BatchLineRenderer:
    """A line of an OpenAI Batch file (checked as it was read): its ``body`` goes out as it is, the job's
    parameters filling in only what it leaves out; the output records its messages (chat) or prompt."""

    templated = False

    def __init__(self, api: str) -> None:
        self.input_column = "messages" if api == "chat" else "prompt"

    @property
    def uses_whole_row(self) -> bool:
        return False

    def columns_used(self) -> set[str]:
        return {"body"}

    def check_columns(self, columns: list[str]) -> None:
        if "body" not in columns:  # the reader always gives it: this is a bug, not a user's mistake
            raise BadTemplateError("dataset.format: openai_batch: the input has no body column")

    def render(self, row: dict[str, Any], row_id: str) -> Rendered:
        body = json.loads(row["body"])
        if self.input_column == "prompt":
            prompt = body["prompt"]
            return Rendered(prompt=prompt if isinstance(prompt, str) else json.dumps(prompt), params=body)
        return Rendered(messages=tuple(_recorded(m) for m in body["messages"]), params=body)


def _recorded(message: Any) -> Message:
    """A body's message as the output records it: role and content as text (a list of parts as JSON)."""
    if not isinstance(message, Mapping):
        return {"role": "user", "content": json.dumps(message)}
    content = message.get("content")
    text = content if isinstance(content, str) or content is None else json.dumps(content, ensure_ascii=False)
    return {"role": str(message.get("role")), "content": text}


def renderer_of(job: LoadedJob) -> Renderer:
    """The job's renderer, its templates compiled (``BadTemplateError`` naming the one that does not)."""
    spec = job.spec
    if job.is_batch:
        return BatchLineRenderer(spec.api)
    if spec.messages_column is not None:
        return ColumnRenderer(spec.messages_column)
    if spec.messages is not None:
        return MessagesRenderer(MessagesTemplate(spec.messages, spec.template_nulls))
    template = PromptTemplate(job.template_text, nulls=spec.template_nulls)
    return UserMessageRenderer(template) if spec.api == "chat" else PromptRenderer(template)
