"""What axum does before TGI's handlers run: the bearer-token check and the ``Json`` extractor's rejections,
all answered in text/plain (or an empty body for 401), never in TGI's JSON error shape.

Axum's order: authorization middleware (401), content type (415), body size (413), JSON syntax (400), then
serde types (422, ``tgbatch.validation.check_wire``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tgbatch.backends.tgi.rules import check_wire
from tgbatch.errors import ValidationError

JSON_CONTENT_TYPE = "application/json"
_MISSING_JSON = "Expected request with `Content-Type: application/json`"
_TOO_LARGE = "Failed to buffer the request body: length limit exceeded"
_SYNTAX = "Failed to parse the request body as JSON: "


class Rejection(Exception):
    """An extractor rejection: the response to send instead of running the handler."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text

    def response(self) -> Response:
        return Response(self.text, status_code=self.status, media_type="text/plain")


def authorized(request: Request, api_key: str | None) -> bool:
    """TGI compares ``Authorization`` to ``Bearer <key>`` case-insensitively."""
    if api_key is None:
        return True
    header = request.headers.get("authorization")
    return header is not None and header.lower() == f"bearer {api_key}".lower()


def _is_json_type(content_type: str | None) -> bool:
    if content_type is None:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = mime.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejection(413, _TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejection(413, _TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity; serde_json does not
    raise ValueError(name)


def _serde_message(exc: json.JSONDecodeError) -> str:
    """serde_json's wording for Python's JSON syntax errors (line/column as serde counts them, roughly)."""
    doc, pos = exc.doc, exc.pos
    at_eof = pos >= len(doc.rstrip())
    msg = exc.msg
    if at_eof and not msg.startswith("Extra data"):
        kind = "a string" if msg.startswith("Unterminated string") else "a value"
        if msg.startswith(("Expecting property name", "Expecting ':'")) or (
            msg.startswith("Expecting ','") and doc.lstrip().startswith("{")
        ):
            kind = "an object"
        elif msg.startswith("Expecting ','"):
            kind = "a list"
        lines = doc.split("\n")
        return f"EOF while parsing {kind} at line {len(lines)} column {len(lines[-1])}"
    if msg.startswith("Expecting value"):
        text = "expected value"
    elif msg.startswith("Expecting property name"):
        text = "key must be a string"
    elif msg.startswith("Expecting ':'"):
        text = "expected `:`"
    elif msg.startswith("Expecting ','"):
        text = "expected `,` or `}`" if doc[:pos].rfind("{") > doc[:pos].rfind("[") else "expected `,` or `]`"
    elif msg.startswith("Extra data"):
        text = "trailing characters"
    elif msg.startswith("Invalid control character"):
        text = "control character (\\u0000-\\u001F) found while parsing a string"
    elif msg.startswith("Invalid \\escape") or msg.startswith("Invalid \\u"):
        text = "invalid escape"
    else:
        text = msg[0].lower() + msg[1:]
    return f"{text} at line {exc.lineno} column {exc.colno}"


def parse_json(raw: bytes) -> Any:
    """Parse a body as serde_json would accept it; raise a 400 ``Rejection`` otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejection(400, _SYNTAX + f"invalid unicode code point at byte {exc.start}") from exc
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise Rejection(400, _SYNTAX + _serde_message(exc)) from exc
    except ValueError as exc:
        raise Rejection(400, _SYNTAX + "expected value") from exc
    if "\\u" in text and ("\\ud" in text.lower()):
        # serde refuses lone UTF-16 surrogates, which Python keeps (and could not encode in the answer)
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise Rejection(400, _SYNTAX + "lone leading surrogate in hex escape") from exc
    return body


async def read_body(request: Request, payload_limit: int, *, compat: bool) -> dict[str, Any]:
    """Axum's ``Json<GenerateRequest>`` extractor. ``compat`` is the ``/`` route, whose body also has ``stream``."""
    if not _is_json_type(request.headers.get("content-type")):
        raise Rejection(415, _MISSING_JSON)
    body = parse_json(await _read_limited(request, payload_limit))
    if not compat and isinstance(body, dict) and "stream" in body:
        # GenerateRequest has no `stream` field: serde ignores it like any unknown key
        body = {k: v for k, v in body.items() if k != "stream"}
    try:
        check_wire(body)
    except ValidationError as exc:  # error_type None: serde's text/plain 422, not TGI's JSON one
        raise Rejection(422, str(exc)) from exc
    return body


async def read_json(request: Request, payload_limit: int, *, require_json_type: bool) -> Any:
    """Any JSON body (the OpenAI routes), with axum's size and syntax rejections; ``require_json_type``: TGI's
    extractor refuses a body without a JSON content type (FastAPI servers parse it anyway)."""
    if require_json_type and not _is_json_type(request.headers.get("content-type")):
        raise Rejection(415, _MISSING_JSON)
    return parse_json(await _read_limited(request, payload_limit))
