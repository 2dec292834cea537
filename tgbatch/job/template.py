"""The prompt template: Jinja2 over a row's columns, strict about undefined names and about printing a null
(which Python would print as ``None``) unless the job says ``template_nulls: empty``.

In the template, each column is a variable (``{{ question }}``), ``row`` is the whole row as a mapping (for
column names that are not identifiers: ``{{ row["my-col"] }}``) and ``row_id`` is the row's id. A single
trailing newline is dropped (YAML ``|`` blocks end with one).
"""

from __future__ import annotations

from typing import Any, Literal

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from tgbatch.errors import BadTemplateError, TemplateError

BUILTIN_NAMES = frozenset({"row", "row_id"})
NullPolicy = Literal["error", "empty"]


class _NullPrinted(Exception):
    """A ``{{ expression }}`` evaluated to null: strict templates refuse to print it."""


def _no_null(value: Any) -> Any:
    if value is None:
        raise _NullPrinted()
    return value


def _null_as_empty(value: Any) -> Any:
    return "" if value is None else value


class PromptTemplate:
    """A compiled template. Compile errors and unknown columns are ``BadTemplateError`` (a ``SpecError``); a row
    that cannot be rendered is a ``TemplateError`` (a ``RowError``: recorded, the job goes on)."""

    def __init__(self, text: str, nulls: NullPolicy = "error", *, label: str = "template") -> None:
        self.text = text
        self.label = label
        self.nulls = nulls
        finalize = _null_as_empty if nulls == "empty" else _no_null
        env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, finalize=finalize)
        try:
            ast = env.parse(text)
            self._template = env.from_string(ast)
        except jinja2.TemplateSyntaxError as exc:
            raise BadTemplateError(f"{label}: line {exc.lineno}: {exc.message}") from None
        self.variables = frozenset(meta.find_undeclared_variables(ast))
        if not text.strip():
            raise BadTemplateError(f"{label}: is empty; write the prompt, e.g. {label}: 'Summarize: {{{{ text }}}}'")

    @property
    def uses_whole_row(self) -> bool:
        return "row" in self.variables

    def columns_used(self) -> set[str]:
        return set(self.variables - BUILTIN_NAMES)

    def check_columns(self, columns: list[str]) -> None:
        """Refuse a template naming a column the dataset does not have."""
        missing = sorted(self.columns_used() - set(columns))
        if missing:
            names = ", ".join(f"{{{{ {name} }}}}" for name in missing)
            raise BadTemplateError(
                f"{self.label}: uses {names} but the dataset has no such column; its columns are: {', '.join(columns)}"
            )

    def render(self, row: dict[str, Any], row_id: str) -> str:
        """The prompt for one row. Raises ``TemplateError`` with the cause when the row cannot be rendered."""
        context = {"row": row, "row_id": row_id, **row}
        try:
            return self._template.render(context)
        except _NullPrinted:
            nulls = sorted(name for name in self.columns_used() if row.get(name) is None) or ["a value"]
            raise TemplateError(
                f"{self.label}: row {row_id!r} would print null for {', '.join(nulls)} (Python would write 'None'): "
                "handle it in the template ({{ x or '' }}, {% if x %}...{% endif %}) or set template_nulls: empty"
            ) from None
        except Exception as exc:  # jinja2 surfaces the template's own errors as any exception type
            raise TemplateError(f"{self.label}: cannot render row {row_id!r}: {type(exc).__name__}: {exc}") from exc
