"""The job spec: a YAML file validated by pydantic models that refuse unknown keys, plus ``--set key.path=value``
overrides. Every error is a ``SpecError`` whose message names the field, the value given and the fix.

Relative input paths (``dataset.path``, ``template_file``) are resolved against the job file's folder first,
then the current directory; ``output.dir`` is relative to the current directory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from tgbatch.backends.tgi.rules import Parameters
from tgbatch.job.chat_params import Api, ChatParameters, CompletionsParameters
from tgbatch.job.location import Location
from tgbatch.job.messages import MessageSpec
from tgbatch.score.spec import ScoreSpec
from tgbatch.types import U64_MAX

SeedPolicy = Literal["none", "fixed", "per_row", "random"]
DetailsLevel = Literal["none", "summary", "full"]
DatasetFormat = Literal["jsonl", "json", "csv", "parquet", "arrow", "openai_batch"]
ServerKind = Literal["auto", "tgi", "vllm", "sglang", "openai"]
#: servers that pick the model per request and serve many: a job must name one
_NEEDS_MODEL = ("router.huggingface.co",)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SENSITIVE = re.compile(r"auth|token|key|secret|cookie|password|session", re.IGNORECASE)
_SENSITIVE_QUERY = frozenset(
    {"api_key", "apikey", "key", "token", "access_token", "auth", "password", "secret", "sig", "signature"}
)
REDACTED = "<redacted>"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    """Where the prompts come from."""

    path: str = Field(
        description="A local file, a glob, a folder of files, a `datasets.save_to_disk` folder, or a Hub "
        "dataset id (resolved through the `datasets` cache).",
        min_length=1,
    )
    format: DatasetFormat | None = Field(
        None,
        description="jsonl, json (JSON Lines), csv, parquet, arrow, or openai_batch (an OpenAI Batch file: each "
        "line's body is sent to its url; no template). Default: from the file extension and, for JSON Lines, "
        "openai_batch when the first line carries custom_id, method, url and body.",
    )
    split: str = Field("train", description="Split of a Hub dataset or of a saved DatasetDict.", min_length=1)
    config: str | None = Field(None, description="Configuration (subset) name of a Hub dataset.")
    id_column: str | None = Field(
        None, description="Column holding a stable unique row id. Default: the row's position in the input."
    )
    columns: list[str] | None = Field(
        None, description="Input columns to carry into the output. Default: all ([] carries none)."
    )
    limit: int | None = Field(None, ge=0, description="Use only the first N rows of the input.")
    infer_types: bool = Field(
        False,
        description="CSV: infer column types (numbers, booleans) instead of keeping each value's text as written "
        "(0001 stays 0001). The id column is always read as text.",
    )


class SeedSpec(_Strict):
    """How each request's sampling seed is chosen."""

    policy: SeedPolicy | None = Field(
        None,
        description="none (server chooses; its seed is recorded), fixed (value + sample index), per_row (a u64 "
        "derived from value, row id and sample index), random (drawn client-side and recorded). Default: "
        "per_row when sampling, none when greedy or best_of > 1.",
    )
    value: int = Field(0, ge=0, le=U64_MAX, description="Base value of the fixed and per_row policies.")


class EndpointSpec(_Strict):
    """The TGI server."""

    url: str | list[str] = Field(
        description="http(s)://host:port of a TGI server, or sim://?knob=value for the simulator; or a list of "
        "them: each request goes to the endpoint with the fewest requests in flight, a failing endpoint is set "
        "aside until /health answers again, and a failed row is retried on another endpoint."
    )
    token_env: str = Field(
        "HF_TOKEN", description="Environment variable holding the bearer token (never written anywhere)."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")
    timeout_s: float = Field(120.0, gt=0, le=86400, description="Timeout of one request, in seconds.")
    concurrency: int | Literal["auto"] = Field(
        "auto",
        description="Requests in flight per endpoint. auto: start at 8, grow while latency stays near its floor, "
        "cut as it climbs, on the server's queue gauge and on 429/503, never above the server's /info "
        "max_concurrent_requests. A number: exactly that many.",
    )
    max_concurrency: int = Field(
        256, ge=1, le=4096, description="With concurrency: auto, the most requests in flight per endpoint."
    )
    api: Api | None = Field(
        None,
        description="generate (TGI /generate), chat (/v1/chat/completions) or completions (/v1/completions). "
        "Default: chat with messages or messages_column, generate with a template.",
    )
    model: str | None = Field(
        None,
        min_length=1,
        description="Chat and completions: the model to ask for. Default: the first id of GET /v1/models "
        "(required for https://router.huggingface.co, e.g. Qwen/Qwen3-8B:fastest).",
    )
    server: ServerKind = Field(
        "auto",
        description="Chat and completions: the server's kind (tgi, vllm, sglang, openai), for its quirks. auto: "
        "detected from /info, /v1/models and /version.",
    )
    wait_for_model: bool | None = Field(None, description="Send x-wait-for-model (HF Inference API).")
    use_cache: bool | None = Field(None, description="Send x-use-cache (HF Inference API).")

    @property
    def urls(self) -> list[str]:
        return [self.url] if isinstance(self.url, str) else list(self.url)

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str | list[str]) -> str | list[str]:
        urls = [url] if isinstance(url, str) else url
        if not urls:
            raise ValueError("needs at least one URL")
        for one in urls:
            if urlsplit(one).scheme not in ("http", "https", "sim"):
                raise ValueError(
                    f"must start with http://, https:// or sim:// (got {one!r}); e.g. http://localhost:8080"
                )
        if len(set(urls)) != len(urls):
            raise ValueError(f"lists the same URL twice: {next(u for u in urls if urls.count(u) > 1)!r}")
        return url

    @field_validator("concurrency")
    @classmethod
    def _check_concurrency(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 4096:
            raise ValueError(f"must be auto or a number from 1 to 4096 (got {value})")
        return value


class RetrySpec(_Strict):
    """Retries of retryable errors (429, 503, 502, 504, 424, 500 incomplete generation, connection errors,
    timeouts). Never retried: 400, 401, 403, 404, 413, 415, 422. Overload and loading answers (429, 503) pause
    the endpoint for everyone and do not use up a row's attempts, only its max_elapsed_s."""

    attempts: int = Field(
        10, ge=1, le=1000, description="Most attempts per row (1 = no retry); 429/503 answers do not count."
    )
    initial_wait_s: float = Field(0.5, ge=0, le=3600, description="First backoff wait, doubled each retry.")
    max_wait_s: float = Field(60.0, ge=0, le=86400, description="Longest wait between attempts (caps hints).")
    max_elapsed_s: float = Field(1800.0, gt=0, description="Give a row up after this many seconds of retrying.")
    max_outage_s: float = Field(
        1800.0,
        gt=0,
        description="How long every endpoint may be unreachable (connection refused, unknown host, TLS) before "
        "the job stops (exit 2, nothing marked failed, resumable). Rows wait meanwhile, spending no attempts.",
    )


class OutputSpec(_Strict):
    """Where and how results are written."""

    dir: str | None = Field(None, description="Output folder. Default: runs/<job name>.")
    rows_per_shard: int = Field(1000, ge=1, le=10_000_000, description="Rows per committed Parquet file.")
    commit_interval_s: float = Field(
        60.0, gt=0, description="Commit a partial shard after this many seconds (bounds work lost on a crash)."
    )
    details: DetailsLevel = Field(
        "summary",
        description="none: generated_text and seed; summary: plus finish_reason and generated_tokens; "
        "full: plus the details struct (tokens, prefill, top_tokens, best_of_sequences).",
    )


JobParameters = Parameters | ChatParameters | CompletionsParameters
_INPUTS = ("template", "template_file", "messages", "messages_column")
_EXACTLY_ONE = (
    "give exactly one of `template` (inline text), `template_file` (a path), `messages` (chat messages, each "
    "content a template) or `messages_column` (a column of message lists); or run an OpenAI Batch file "
    "(dataset.format: openai_batch) without any; given: {given}"
)


class JobSpec(_Strict):
    """A batch job: run every row of a dataset through a prompt template (TGI's ``/generate``, or OpenAI-style
    completions) or chat messages (OpenAI-style chat) on an endpoint."""

    name: str | None = Field(None, description="Job name (default: the job file's name without extension).")
    description: str | None = Field(None, description="Free text, for people.")
    dataset: DatasetSpec
    template: str | None = Field(None, description="Jinja2 template over the row's columns (strict).")
    template_file: str | None = Field(None, description="A file holding the template, instead of `template`.")
    messages: list[MessageSpec] | None = Field(
        None, description="Chat: the messages, each content a Jinja2 template of the row (strict, as `template`)."
    )
    messages_column: str | None = Field(
        None, min_length=1, description="Chat: a column holding each row's messages (a list of {role, content})."
    )
    template_nulls: Literal["error", "empty"] = Field(
        "error",
        description="A null (or absent) value printed by the template: error (the row goes to errors/, naming "
        "the column) or empty (printed as nothing). A template can also handle it: {{ x or '' }}.",
    )
    parameters: JobParameters = Field(
        default_factory=Parameters,
        description="generate: TGI's parameters; chat and completions: OpenAI's (max_tokens, temperature, ...).",
    )
    seed: SeedSpec = Field(default_factory=SeedSpec)
    samples: int = Field(1, ge=1, le=10_000, description="Generations per prompt.")
    endpoint: EndpointSpec
    retry: RetrySpec = Field(default_factory=RetrySpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    score: ScoreSpec | None = Field(
        None,
        description="Score the answers when the run finishes (and with `tgbatch score DIR`). Not part of the "
        "fingerprint: a folder can be rescored, or scored differently, without regenerating.",
    )

    @model_validator(mode="before")
    @classmethod
    def _parameters_of_the_api(cls, data: Any) -> Any:
        """Validate ``parameters`` by the api's own model (a union would try each and report all three)."""
        if not isinstance(data, dict) or not isinstance(data.get("parameters", {}), dict):
            return data
        if all(data.get(key) is None for key in _INPUTS) and not _is_batch(data):  # said first: else the api is a guess
            raise ValueError(_EXACTLY_ONE.format(given="none"))
        models: dict[str, type[BaseModel]] = {"chat": ChatParameters, "completions": CompletionsParameters}
        model = models.get(_api_of(data), Parameters)
        try:
            return {**data, "parameters": model.model_validate(data.get("parameters", {}))}
        except PydanticValidationError as exc:
            raise _relocated(exc, "parameters") from None

    @model_validator(mode="after")
    def _check_input(self) -> JobSpec:
        given = [k for k in _INPUTS if getattr(self, k) is not None]
        if self.dataset.format == "openai_batch":
            return self._check_batch(given)
        if len(given) != 1:
            raise ValueError(_EXACTLY_ONE.format(given=given))
        api = self.api
        if api != "chat" and given[0].startswith("messages"):
            raise ValueError(
                f"`{given[0]}` needs endpoint.api: chat (endpoint.api: {api} takes a `template`: the prompt)"
            )
        if self.score is not None:
            self.score.check_samples(self.samples)
        if self.messages is not None and not self.messages:
            raise ValueError("`messages` is empty: give at least one {role, content}")
        if api != "generate" and self.endpoint.model is None:
            hosts = [h for h in _NEEDS_MODEL for url in self.endpoint.urls if urlsplit(url).hostname == h]
            if hosts:
                raise ValueError(
                    f"endpoint.model: required for {hosts[0]} (it serves many models): name one, e.g. model: "
                    "Qwen/Qwen3-8B:fastest (a `:provider`, `:fastest` or `:cheapest` suffix picks the provider)"
                )
        return self

    def _check_batch(self, given: list[str]) -> JobSpec:
        if given:
            raise ValueError(
                f"dataset.format: openai_batch takes each row's input from its body: leave out {given[0]!r}"
            )
        if self.api == "generate":
            raise ValueError(
                "dataset.format: openai_batch needs endpoint.api: chat or completions (the file's url says which)"
            )
        return self

    @property
    def api(self) -> Api:
        """The route the job speaks: the given one, else chat for messages, generate for a template."""
        given = {"endpoint": {"api": self.endpoint.api}, "messages": self.messages}
        return _api_of({**given, "messages_column": self.messages_column})

    @property
    def seed_policy(self) -> SeedPolicy:
        """The policy in force: the given one, else per_row when sampling, none when greedy or best_of > 1."""
        if self.seed.policy is not None:
            return self.seed.policy
        p = self.parameters
        if isinstance(p, Parameters) and (p.best_of or 1) > 1:
            return "none"
        return "per_row" if p.effectively_sampling else "none"


def _is_batch(data: dict[str, Any]) -> bool:
    dataset = data.get("dataset")
    return isinstance(dataset, dict) and dataset.get("format") == "openai_batch"


def _api_of(data: dict[str, Any]) -> Api:
    endpoint = data.get("endpoint")
    given = endpoint.get("api") if isinstance(endpoint, dict) else None
    if given in ("generate", "chat", "completions"):
        return given
    return "chat" if data.get("messages") is not None or data.get("messages_column") is not None else "generate"


def _relocated(exc: PydanticValidationError, *where: str) -> PydanticValidationError:
    """The errors of a nested model validated on its own, at their place in the job."""
    details: list[InitErrorDetails] = []
    for err in exc.errors():
        kind: Any = err["type"]
        if kind == "moved_parameter":  # our own error type: rebuilt with its message
            kind = PydanticCustomError(kind, err["msg"])
        details.append(
            InitErrorDetails(type=kind, loc=(*where, *err["loc"]), input=err.get("input"), ctx=err.get("ctx", {}))
        )
    return PydanticValidationError.from_exception_data(exc.title, details)


@dataclass(frozen=True)
class LoadedJob:
    """A validated spec with what loading resolved: the job file, its name, the template text, input paths."""

    spec: JobSpec
    name: str
    template_text: str
    source: Path | None
    base_dir: Path
    output_dir: Location  # a local folder, or an object-store URL (job.location)
    warnings: list[str] = field(default_factory=list)

    @property
    def is_batch(self) -> bool:
        """The input is an OpenAI Batch file: each row's body is its request."""
        return self.spec.dataset.format == "openai_batch"

    def resolve_input(self, path: str) -> Path:
        """A relative path against the job file's folder, else against the current directory."""
        p = Path(os.path.expanduser(path))
        if p.is_absolute():
            return Path(os.path.normpath(p))
        first = Path(os.path.normpath(self.base_dir / p))
        if first.exists() or _has_glob(path):
            return first
        second = Path(os.path.normpath(Path.cwd() / p))
        return second if second.exists() else first

    def resolved_dict(self) -> dict[str, Any]:
        """The spec as run, for ``job.yaml``: name and seed policy resolved, template inline, no secrets."""
        data = self.spec.model_dump(mode="json")
        data["name"] = self.name
        if Path(self.spec.dataset.path).exists() or self.resolve_input(self.spec.dataset.path).exists():
            data["dataset"]["path"] = str(self.resolve_input(self.spec.dataset.path))
        if self.spec.messages is None and self.spec.messages_column is None and not self.is_batch:
            data["template"] = self.template_text
        for key in ("template_file", "messages", "messages_column", "template", "score"):
            if data.get(key) is None:
                data.pop(key, None)
        data["seed"]["policy"] = self.spec.seed_policy
        params = self.spec.parameters
        data["parameters"] = params.to_wire() if isinstance(params, Parameters) else _openai_dump(params)
        if self.spec.api == "generate":  # job.yaml of a /generate job stays as it was
            for key in ("api", "model", "server"):
                data["endpoint"].pop(key, None)
        else:
            data["endpoint"]["api"] = self.spec.api
        data["output"]["dir"] = str(self.output_dir)
        endpoint = data["endpoint"]
        urls = [redact_url(u) for u in self.spec.endpoint.urls]
        endpoint["url"] = urls[0] if isinstance(self.spec.endpoint.url, str) else urls
        endpoint["headers"] = {k: (REDACTED if _SENSITIVE.search(k) else v) for k, v in endpoint["headers"].items()}
        return data


def _openai_dump(params: ChatParameters | CompletionsParameters) -> dict[str, Any]:
    return params.model_dump(mode="json", exclude_unset=True)


def _has_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def redact_url(url: str) -> str:
    """The URL without user:password and with sensitive-looking query values blanked."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    items = []
    for item in parts.query.split("&") if parts.query else []:
        key, sep, _ = item.partition("=")
        items.append(f"{key}{sep}{REDACTED}" if sep and key.lower() in _SENSITIVE_QUERY else item)
    query = "&".join(items)
    if netloc == parts.netloc and query == parts.query:
        return url  # nothing to hide (and urlunsplit would turn sim://?x into sim:?x)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
