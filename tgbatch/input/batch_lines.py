"""Reading an OpenAI Batch file (``dataset.format: openai_batch``): each line ``{custom_id, method, url, body}``
checked as it is read and turned into a row whose ``body`` is kept as its JSON text, so it is sent exactly as
written (Arrow's JSON reader would type every body by the first lines and drop the keys they lack).

Every line is checked, on every read: ``check_ids`` reads the whole file before a run, so a bad line anywhere
stops the job (exit 2) before any request, naming the file, the line and the fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from tgbatch.errors import DatasetError
from tgbatch.input.files import BATCH_ROWS, JSON_CHUNK_BYTES, _line_chunks
from tgbatch.job.batch_file import KEYS, ROUTES, URLS

SCHEMA = pa.schema([(key, pa.string()) for key in KEYS])
_INPUT = {"chat": "messages", "completions": "prompt"}


class BatchLinesReader:
    """The lines of OpenAI Batch files for a job of ``api`` (chat or completions): every line's url must be
    that api's (one url per file, as OpenAI requires)."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.url = URLS[api]

    def schema(self, path: Path) -> pa.Schema:
        return SCHEMA

    def batches(self, path: Path, schema: pa.Schema, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        names = list(KEYS) if columns is None else columns
        rows: list[dict[str, str]] = []
        for number, line in _lines(path):
            rows.append(self._row(line, number, path))
            if len(rows) == BATCH_ROWS:
                yield _batch(rows, names)
                rows = []
        if rows:
            yield _batch(rows, names)

    def count(self, path: Path, schema: pa.Schema) -> int:
        return sum(1 for _ in _lines(path))

    def _row(self, text: bytes, number: int, path: Path) -> dict[str, str]:
        where = f"{path.name} line {number}"
        try:
            line = json.loads(text)
        except ValueError as exc:
            raise DatasetError(f"dataset.path: {where} is not JSON ({exc})") from None
        if not isinstance(line, dict):
            raise DatasetError(f"dataset.path: {where} is not a JSON object with custom_id, method, url and body")
        missing = [key for key in KEYS if key not in line or line[key] is None]
        if missing:
            raise DatasetError(
                f"dataset.path: {where} has no {missing[0]}; every OpenAI Batch line carries custom_id, method "
                "(POST), url and body"
            )
        custom_id, method, url, body = (line[key] for key in KEYS)
        if not isinstance(custom_id, str) or not custom_id:
            raise DatasetError(f"dataset.path: {where}: custom_id must be a non-empty string (got {custom_id!r})")
        if method != "POST":
            raise DatasetError(f"dataset.path: {where}: method must be 'POST' (got {method!r})")
        self._check_url(url, where)
        self._check_body(body, where)
        return {"custom_id": custom_id, "method": method, "url": url, "body": json.dumps(body, ensure_ascii=False)}

    def _check_url(self, url: Any, where: str) -> None:
        if url == self.url:
            return
        if url in ROUTES:
            raise DatasetError(
                f"dataset.path: {where} has url {url!r} but the file's first line has {self.url!r}: a batch file "
                "holds one url (as OpenAI requires); split it into one file per url and run each as its own job"
            )
        raise DatasetError(
            f"dataset.path: {where} has url {url!r}: tgbatch runs OpenAI Batch lines of "
            f"{' and '.join(repr(u) for u in ROUTES)} only (embeddings, responses and other routes are not text "
            "generation jobs)"
        )

    def _check_body(self, body: Any, where: str) -> None:
        if not isinstance(body, dict):
            raise DatasetError(f"dataset.path: {where}: body must be a JSON object (the request), got {body!r:.60}")
        key = _INPUT[self.api]
        value = body.get(key)
        if key == "messages" and (not isinstance(value, list) or not value):
            raise DatasetError(f"dataset.path: {where}: a {self.url} body needs `messages`, a non-empty list")
        if key == "prompt" and (value is None or value == "" or value == []):
            raise DatasetError(f"dataset.path: {where}: a {self.url} body needs a `prompt`")


def _batch(rows: list[dict[str, str]], names: list[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {name: [row[name] for row in rows] for name in names}, schema=pa.schema([SCHEMA.field(n) for n in names])
    )


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, text) of each non-blank line, read a few megabytes at a time (compressed files too)."""
    number = 0
    with pa.input_stream(str(path), compression="detect") as stream:
        for chunk in _line_chunks(stream, JSON_CHUNK_BYTES):
            for line in chunk.split(b"\n"):
                number += 1
                if line.strip():
                    yield number, line
            number -= 1  # a chunk ends at a line end: the empty piece after it is no line
