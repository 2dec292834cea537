"""Where a job reads and writes: a local path or an object-store URL (``s3://bucket/prefix``, ``gs://...``,
``hf://datasets/...``), read and written through fsspec.

Only the schemes below are accepted: any other ``scheme://`` is refused with the supported ones, never taken
for a relative folder (``Path("s3://tgb/out")`` is the local folder ``s3:/tgb/out``). Pure: nothing here
imports fsspec, so a bad URL is refused before anything is installed or opened."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tgbatch.errors import SpecError

#: URL scheme -> the package fsspec needs for it (``pip install 'tgbatch[s3]'`` brings s3fs)
REMOTE_SCHEMES = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "hf": "huggingface_hub"}
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")

#: a local path or a remote URL (a ``str`` starting with one of ``REMOTE_SCHEMES``)
Location = Path | str


def url_scheme(value: str) -> str | None:
    """The ``scheme`` of ``scheme://...``, lower-cased, or ``None`` for a plain path."""
    match = _SCHEME.match(value)
    return match["scheme"].lower() if match else None


def supported() -> str:
    return ", ".join(f"{s}://" for s in REMOTE_SCHEMES)


def check_url(value: str, field: str) -> str | None:
    """``value``'s scheme when it is a supported remote URL, ``None`` for a local path (``file://`` included);
    ``SpecError`` naming ``field``, the value and the supported schemes for any other URL."""
    scheme = url_scheme(value)
    if scheme is None or scheme == "file":
        return None
    if scheme not in REMOTE_SCHEMES:
        raise SpecError(
            f"{field}: {value!r} uses the URL scheme {scheme}://, which tgbatch cannot read or write; use a local "
            f"path or one of {supported()} (object stores need: pip install 'tgbatch[s3]')"
        )
    if len(value) <= len(scheme) + 3 or value[len(scheme) + 3] == "/":
        raise SpecError(f"{field}: {value!r} names no bucket; write {scheme}://BUCKET/PREFIX")
    return scheme


def local_path(value: str) -> str:
    """``file:///x`` -> ``/x``; anything else as is."""
    return value[len("file://") :] if url_scheme(value) == "file" else value


def parse_location(value: str, field: str, *, absolute: bool = True) -> Location:
    """``value`` as an object-store URL (kept as given, without a trailing ``/``) or a local path (``~``
    expanded, made absolute unless ``absolute`` is false); ``SpecError`` for an unsupported scheme."""
    if check_url(value, field) is not None:
        return value.rstrip("/")
    path = Path(os.path.expanduser(local_path(value)))
    return path.absolute() if absolute else path


def is_remote(location: Location) -> bool:
    return isinstance(location, str) and url_scheme(location) in REMOTE_SCHEMES


def join(location: Location, *parts: str) -> Location:
    """``location / part / ...`` for a path or a URL."""
    if isinstance(location, Path):
        return location.joinpath(*parts)
    return "/".join([location.rstrip("/"), *parts])
