"""Constrained decoding for the simulator: a ``json`` grammar yields JSON valid against its schema, a ``regex``
grammar a string the regex fully matches.

The router's checks come from ``tgbatch.validation`` (parsing, ``properties``); this module adds what only a
server does: the JSON Schema metaschema check (``grammar is not valid: ...``) and the compilation step, which
refuses what it cannot generate for (``cannot compile regex from schema: ...``, or for a regex grammar
``grammar is not valid: ...``) so a client gets a clear 422 instead of output that breaks its own grammar.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
from functools import lru_cache

# the regex parser behind ``re`` (Python 3.11+), which gives the tree that generation walks; typeshed does not
# describe these private modules
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import jsonschema

from tgbatch.backends.tgi.models import Grammar
from tgbatch.backends.tgi.rules import PREFIX, grammar_schema
from tgbatch.errors import ValidationError

_CACHE_SIZE = 256
_MAX_DEPTH = 16
_EXTRA_REPEAT = 3  # an unbounded repeat (``*``, ``+``, ``{n,}``) runs at most this many times beyond its minimum
_PRINTABLE = [chr(c) for c in range(32, 127)]
_WORDS = ["alpha", "bravo", "delta", "echo", "river", "stone", "maple", "cedar", "amber", "coral", "nova", "orbit"]


class Unsupported(Exception):
    """The grammar uses a construct the simulator cannot generate for."""


def _fail(message: str) -> ValidationError:
    return ValidationError(PREFIX + message)


# -- regex ----------------------------------------------------------------------------------------------------

_CATEGORIES: dict[Any, list[str]] = {
    sre_c.CATEGORY_DIGIT: list(string.digits),
    sre_c.CATEGORY_SPACE: [" ", "\t", "\n"],
    sre_c.CATEGORY_WORD: list(string.ascii_letters + string.digits + "_"),
}
_NEGATED = {
    sre_c.CATEGORY_NOT_DIGIT: sre_c.CATEGORY_DIGIT,
    sre_c.CATEGORY_NOT_SPACE: sre_c.CATEGORY_SPACE,
    sre_c.CATEGORY_NOT_WORD: sre_c.CATEGORY_WORD,
}


def _category(cat: Any) -> set[str]:
    if cat in _CATEGORIES:
        return set(_CATEGORIES[cat])
    if cat in _NEGATED:
        return set(_PRINTABLE) - set(_CATEGORIES[_NEGATED[cat]])
    raise Unsupported(f"character category {cat}")


def _charset(items: list[tuple[Any, Any]]) -> list[str]:
    chars: set[str] = set()
    negate = False
    for op, av in items:
        if op is sre_c.NEGATE:
            negate = True
        elif op is sre_c.LITERAL:
            chars.add(chr(av))
        elif op is sre_c.RANGE:
            low, high = av
            # a huge unicode range contributes its first few hundred code points, enough to pick from
            chars.update(chr(c) for c in range(low, min(high, low + 512) + 1))
        elif op is sre_c.CATEGORY:
            chars |= _category(av)
        else:
            raise Unsupported(f"{op} in a character class")
    if negate:
        chars = set(_PRINTABLE) - chars
    if not chars:
        raise Unsupported("a character class that matches nothing printable")
    return sorted(chars)


def _walk_regex(tree: Any, rng: random.Random, out: list[str]) -> None:
    for op, av in tree:
        if op is sre_c.LITERAL:
            out.append(chr(av))
        elif op is sre_c.NOT_LITERAL:
            out.append(rng.choice([c for c in _PRINTABLE if c != chr(av)]))
        elif op is sre_c.ANY:
            out.append(rng.choice(string.ascii_letters))
        elif op is sre_c.IN:
            out.append(rng.choice(_charset(av)))
        elif op is sre_c.AT:
            continue  # anchors: the whole output is one match anyway
        elif op is sre_c.BRANCH:
            _walk_regex(rng.choice(av[1]), rng, out)
        elif op is sre_c.SUBPATTERN:
            _walk_regex(av[-1], rng, out)
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            low, high, sub = av
            if high is sre_c.MAXREPEAT or high > low + _EXTRA_REPEAT:
                high = low + _EXTRA_REPEAT
            for _ in range(rng.randint(low, high)):
                _walk_regex(sub, rng, out)
        elif op is getattr(sre_c, "ATOMIC_GROUP", None):
            _walk_regex(av, rng, out)
        else:
            raise Unsupported(
                f"{str(op).lower()} is not supported (only literals, classes, quantifiers, alternation and groups)"
            )


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_regex(pattern: str) -> tuple[re.Pattern[str], Any]:
    try:
        return re.compile(pattern), sre_parse.parse(pattern)
    except re.error as exc:
        raise Unsupported(f"invalid regex {pattern!r}: {exc}") from exc


def _sample_regex(pattern: str, rng: random.Random) -> str:
    compiled, tree = _parse_regex(pattern)
    out: list[str] = []
    _walk_regex(tree, rng, out)
    text = "".join(out)
    if compiled.fullmatch(text) is None:
        raise Unsupported(f"regex {pattern!r} (its parts constrain each other)")
    return text


class RegexSampler:
    """A ``regex`` grammar."""

    def __init__(self, pattern: str) -> None:
        self.key = "regex:" + pattern
        self._pattern = pattern
        try:
            self.sample(random.Random(0))
        except Unsupported as exc:
            raise _fail(f"grammar is not valid: the simulator cannot generate for regex {pattern!r}: {exc}") from exc

    def sample(self, rng: random.Random) -> str:
        return _sample_regex(self._pattern, rng)


# -- JSON schema ----------------------------------------------------------------------------------------------


def _resolve(root: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        raise Unsupported(f"remote $ref {ref!r}")
    node: Any = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise Unsupported(f"unresolvable $ref {ref!r}")
        node = node[part]
    return node


def _string(node: dict[str, Any], rng: random.Random) -> str:
    if "pattern" in node:
        return _sample_regex(node["pattern"], rng)
    fmt = node.get("format")
    if fmt == "date-time":
        return f"20{rng.randint(10, 29)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T12:{rng.randint(10, 59)}:00Z"
    if fmt == "date":
        return f"20{rng.randint(10, 29)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
    if fmt == "time":
        return f"1{rng.randint(0, 9)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}"
    if fmt == "email":
        return f"{rng.choice(_WORDS)}@example.com"
    if fmt == "uuid":
        a, b, c, d, e = (rng.getrandbits(bits) for bits in (32, 16, 12, 12, 48))
        return f"{a:08x}-{b:04x}-4{c:03x}-a{d:03x}-{e:012x}"
    if fmt in ("uri", "url"):
        return f"https://example.com/{rng.choice(_WORDS)}"
    low = int(node.get("minLength", 1))
    high = int(node.get("maxLength", max(low, 24)))
    if low > high:
        raise Unsupported(f"string with minLength {low} > maxLength {high}")
    text = rng.choice(_WORDS).capitalize()
    while len(text) < low:
        text += " " + rng.choice(_WORDS)
    return text[: max(high, 0)] if high >= low else text


def _number(node: dict[str, Any], rng: random.Random, integer: bool) -> int | float:
    low = node.get("minimum")
    high = node.get("maximum")
    if "exclusiveMinimum" in node and isinstance(node["exclusiveMinimum"], int | float):
        low = node["exclusiveMinimum"] + (1 if integer else 0.5)
    if "exclusiveMaximum" in node and isinstance(node["exclusiveMaximum"], int | float):
        high = node["exclusiveMaximum"] - (1 if integer else 0.5)
    low = low if low is not None else (high - 100 if high is not None else 0)
    high = high if high is not None else low + 100
    if integer:
        low_i, high_i = math.ceil(low), math.floor(high)
        if low_i > high_i:
            raise Unsupported(f"integer range [{low}, {high}] is empty")
        return rng.randint(low_i, high_i)
    if low > high:
        raise Unsupported(f"number range [{low}, {high}] is empty")
    return round(low + (high - low) * rng.random(), 2) if high - low >= 0.01 else low


def _value(node: Any, root: dict[str, Any], rng: random.Random, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise Unsupported("a schema nested deeper than 16 levels (recursive $ref?)")
    if node is True or node == {}:
        return rng.choice(_WORDS)
    if not isinstance(node, dict):
        raise Unsupported(f"schema {node!r}")
    if "$ref" in node:
        return _value(_resolve(root, node["$ref"]), root, rng, depth + 1)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return rng.choice(node["enum"])
    if "allOf" in node:
        return _value(_all_of(node, root), root, rng, depth + 1)
    for key in ("anyOf", "oneOf"):
        if key in node:
            return _value(rng.choice(node[key]), root, rng, depth + 1)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = rng.choice([k for k in kind if k != "null"] or kind)
    if kind is None:
        kind = "object" if "properties" in node else "array" if "items" in node else "string"
    if kind == "object":
        props = node.get("properties", {})
        return {name: _value(sub, root, rng, depth + 1) for name, sub in props.items()}
    if kind == "array":
        return _array(node, root, rng, depth)
    if kind == "string":
        return _string(node, rng)
    if kind in ("integer", "number"):
        return _number(node, rng, kind == "integer")
    if kind == "boolean":
        return bool(rng.getrandbits(1))
    if kind == "null":
        return None
    raise Unsupported(f"type {kind!r}")


def _all_of(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """The members of an ``allOf`` merged into one schema (properties and required lists combined)."""
    merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
    for part in node["allOf"]:
        part = _resolve(root, part["$ref"]) if isinstance(part, dict) and "$ref" in part else part
        if not isinstance(part, dict):
            raise Unsupported("allOf with a non-object member")
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _array(node: dict[str, Any], root: dict[str, Any], rng: random.Random, depth: int) -> list[Any]:
    prefix = node.get("prefixItems", [])
    items = node.get("items", {})
    low = int(node.get("minItems", 1))
    high = int(node.get("maxItems", low + 2))
    if low > high:
        raise Unsupported(f"array with minItems {low} > maxItems {high}")
    count = max(rng.randint(low, high), len(prefix) if items is False else 0)
    out = [_value(sub, root, rng, depth + 1) for sub in prefix[:count]]
    if items is False:
        return out
    out += [_value(items, root, rng, depth + 1) for _ in range(count - len(out))]
    return out


def _check_metaschema(schema: dict[str, Any]) -> None:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise _fail(f"grammar is not valid: {exc.message}") from exc


class JsonSampler:
    """A ``json`` / ``json_object`` / ``json_schema`` grammar."""

    def __init__(self, key: str, schema: dict[str, Any]) -> None:
        self.key = key
        self._schema = schema
        try:
            self.sample(random.Random(0))
        except Unsupported as exc:
            raise _fail(
                f"cannot compile regex from schema: Unsupported JSON Schema structure: {exc}. "
                "Make sure it is valid to the JSON Schema specification and check if it's supported."
            ) from exc

    def sample(self, rng: random.Random) -> str:
        value = _value(self._schema, self._schema, rng, 0)
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@lru_cache(maxsize=_CACHE_SIZE)
def _compile_cached(kind: str, canonical_value: str) -> RegexSampler | JsonSampler:
    value = json.loads(canonical_value)
    if kind == "regex":
        return RegexSampler(value)
    schema = grammar_schema(Grammar(type=kind, value=value), check_schema=_check_metaschema)
    assert schema is not None
    return JsonSampler(f"{kind}:{canonical_value}", schema)


def compile_grammar(grammar: Grammar) -> RegexSampler | JsonSampler:
    """The router's grammar checks plus the server's; raises ``ValidationError`` (422) with TGI's wording.
    Compiled grammars are cached: batch jobs send the same grammar with every row."""
    # key order is kept: it is the order in which the output's properties appear
    canonical = json.dumps(grammar.value, separators=(",", ":"))
    return _compile_cached(grammar.type, canonical)
