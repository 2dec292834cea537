"""A chat or completions job's ``response_format``: checked when the job is loaded (a JSON Schema that is not
one, a regex that does not compile, an unknown type) and used to check each answer (``format_ok``).

Accepted shapes: OpenAI's ``{type: json_schema, json_schema: {name, schema, strict}}`` and ``{type:
json_object}``, TGI's ``{type: json_schema, value: {name, schema}}``, ``{type: json, value: <schema>}`` and
``{type: regex, value: <pattern>}``. The field is sent as the user wrote it; the backend translates it per server.

An answer is checked as the user will read it: the message content only (reasoning excluded), against the schema,
as a JSON object, or fully matched by the regex. A server that ignored the field (vLLM answers 200, unconstrained)
shows as ``format_ok: false``, not as a silent success.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import jsonschema

TYPES = ("json_schema", "json_object", "json", "regex")


def format_check(value: Mapping[str, Any]) -> Callable[[str], bool]:
    """The answer check of a response_format: ``ValueError`` saying what is wrong and how to write it when the
    format itself is invalid."""
    kind = value.get("type")
    if kind not in TYPES:
        raise ValueError(
            f"type {kind!r} is not one of {', '.join(TYPES)}; e.g. {{type: json_schema, json_schema: {{name: "
            "answer, schema: {type: object}}}}, {type: json_object} or {type: regex, value: '[0-9]+'}"
        )
    if kind == "regex":
        return _regex(value)
    if kind == "json_object":
        schema = value.get("value") or value.get("schema")
        return _schema_check(schema, "value") if schema is not None else _is_object
    if kind == "json":
        return _schema_check(value.get("value"), "value")
    inner = value.get("json_schema", value.get("value"))
    if not isinstance(inner, Mapping) or "schema" not in inner:
        raise ValueError(
            "json_schema needs `json_schema: {name: ..., schema: {...}}` (OpenAI) or `value: {name: ..., schema: "
            "{...}}` (TGI)"
        )
    key = "json_schema" if "json_schema" in value else "value"
    return _schema_check(inner["schema"], f"{key}.schema")


def _regex(value: Mapping[str, Any]) -> Callable[[str], bool]:
    pattern = value.get("value", value.get("regex", value.get("pattern")))
    if not isinstance(pattern, str):
        raise ValueError("regex needs the pattern as a string: {type: regex, value: '[0-9]+'}")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"regex {pattern!r} does not compile: {exc}") from None
    return lambda text: compiled.fullmatch(text) is not None


def _schema_check(schema: Any, where: str) -> Callable[[str], bool]:
    if not isinstance(schema, Mapping | bool):
        raise ValueError(f"{where} must be a JSON Schema (a mapping such as {{type: object}}), not {schema!r}")
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.path) or "(root)"
        raise ValueError(f"{where} is not a valid JSON Schema at {path}: {exc.message}") from None
    validator = cls(schema)

    def check(text: str) -> bool:
        try:
            answer = json.loads(text)
        except ValueError:
            return False
        return bool(validator.is_valid(answer))

    return check


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
