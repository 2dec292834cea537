"""Loading a job: the YAML file, ``--set key.path=value`` overrides, the checks pydantic cannot make (parameters
by the backend's own rules, seeds, the name), and error messages that name the field, the value given and the
fix. Relative input paths (``dataset.path``, ``template_file``) are resolved against the job file's folder first,
then the current directory; ``output.dir`` is relative to the current directory."""

from __future__ import annotations

import difflib
import os
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from tgbatch.backends.tgi.rules import Limits, Parameters, check_best_of, check_grammar, check_parameters, check_wire
from tgbatch.errors import SpecError
from tgbatch.errors import ValidationError as TGIValidationError
from tgbatch.job import batch_file
from tgbatch.job.chat_params import ChatParameters, CompletionsParameters
from tgbatch.job.location import Location, parse_location
from tgbatch.job.spec import _NAME_RE, _SENSITIVE, JobSpec, LoadedJob, _api_of


def parse_override(text: str) -> tuple[list[str], Any]:
    """``key.path=value`` -> (["key", "path"], value). The value is read as YAML (``3``, ``true``, ``[a, b]``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. --set parameters.temperature=0.7")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


_INPUT_KEYS = frozenset({"template", "template_file", "messages", "messages_column"})


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``key.path=value`` set (intermediate mappings are created)."""
    import copy

    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise SpecError(f"--set {text!r}: `{where}` is {child!r}, not a section with keys")
            node = child
        node[path[-1]] = value
        # the ways of giving the input (a template or messages) replace each other
        if len(path) == 1 and path[0] in _INPUT_KEYS:
            for other in _INPUT_KEYS - {path[0]}:
                data.pop(other, None)
    return data


def load_job(path: str | os.PathLike[str], overrides: list[str] | None = None) -> LoadedJob:
    """Read a job file, apply ``--set`` overrides and validate everything that can be checked offline."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"job file not found: {str(source)!r}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read job file {str(source)!r}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"job file {str(source)!r} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"job file {str(source)!r} must be a mapping of keys (dataset:, template:, ...)")
    return load_job_data(data, overrides or [], source=source.resolve())


def load_job_data(data: dict[str, Any], overrides: list[str] | None = None, *, source: Path | None = None) -> LoadedJob:
    """Validate a job given as a mapping (``source`` is the file it came from, for names and paths)."""
    data = apply_overrides(data, overrides or [])
    data = _batch_input(data, source.parent if source is not None else Path.cwd())
    try:
        spec = JobSpec.model_validate(data)
    except PydanticValidationError as exc:
        raise SpecError(_explain(exc, _api_of(data))) from None
    if isinstance(spec.parameters, Parameters):
        _check_parameters(spec.parameters)
        _check_seed(spec)

    name = spec.name if spec.name is not None else (source.stem if source is not None else "job")
    if not _NAME_RE.match(name):
        hint = "" if spec.name is not None else " (taken from the job file's name; set `name:`)"
        raise SpecError(f"name: {name!r} is not a valid job name{hint}: use letters, digits, '.', '_' and '-' only")
    base_dir = source.parent if source is not None else Path.cwd()
    warnings: list[str] = []
    if spec.samples > 1 and spec.seed_policy != "random" and not spec.parameters.effectively_sampling:
        fix = "do_sample: true (or temperature/top_p)" if spec.api == "generate" else "temperature above 0"
        warnings.append(
            f"samples: {spec.samples} with greedy decoding gives {spec.samples} identical generations per "
            f"prompt; set parameters.{fix} to get different ones"
        )
    for key in spec.endpoint.headers:
        if _SENSITIVE.search(key):
            warnings.append(
                f"endpoint.headers.{key} looks like a secret: it is redacted in job.yaml; prefer "
                f"endpoint.token_env (the token is read from the environment and never written)"
            )
    output_dir = _output_location(spec.output.dir, name)
    partial = LoadedJob(spec, name, "", source, base_dir, output_dir, warnings)
    if spec.template is not None:
        template_text = spec.template
    else:
        template_text = _read_template(partial) if spec.template_file is not None else ""
    return LoadedJob(spec, name, template_text, source, base_dir, output_dir, warnings)


def _output_location(value: str | None, name: str) -> Location:
    """``output.dir`` as an absolute local folder, or as given when it is an object-store URL."""
    return parse_location(value, "output.dir") if value else (Path("runs") / name).absolute()


def _batch_input(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """An OpenAI Batch file as input (``dataset.format: openai_batch``, or a JSON Lines file whose first line
    carries custom_id, method, url and body, given no template or messages): the row id is ``custom_id``, the
    api follows the file's url, and no input column is carried (the output has the body's messages or prompt)."""
    dataset = data.get("dataset")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("path"), str):
        return data
    fmt = dataset.get("format")
    if fmt not in (None, "openai_batch") or (fmt is None and any(data.get(k) is not None for k in _INPUT_KEYS)):
        return data
    found = _first_batch_file(dataset["path"], base_dir)
    line = batch_file.first_line(found) if found is not None else None
    if fmt is None and not batch_file.looks_like_batch(line):
        return data
    dataset = {**dataset, "format": "openai_batch"}
    if dataset.get("id_column") not in (None, "custom_id"):
        raise SpecError(
            f"dataset.id_column: {dataset['id_column']!r} cannot be used with an OpenAI Batch file: its rows are "
            "identified by custom_id; leave dataset.id_column out"
        )
    dataset["id_column"] = "custom_id"
    dataset.setdefault("columns", [])
    endpoint = data.get("endpoint")
    if line is None or not isinstance(endpoint, dict):
        return {**data, "dataset": dataset}
    api = batch_file.api_of_url(line.get("url"), f"the first line of {str(found)!r}")
    if endpoint.get("api") not in (None, api):
        raise SpecError(
            f"endpoint.api: {endpoint['api']!r} does not match the OpenAI Batch file, whose url is "
            f"{line.get('url')!r} (api {api}); leave endpoint.api out: it follows the file"
        )
    return {**data, "dataset": dataset, "endpoint": {**endpoint, "api": api}}


def _first_batch_file(path: str, base_dir: Path) -> Path | None:
    """The file whose first line decides: the path itself, or the first (sorted) JSON Lines file of a glob or
    folder; looked up next to the job file, then in the current directory (as ``LoadedJob.resolve_input``)."""
    import glob as globlib

    for base in (base_dir, Path.cwd()):
        full = base / os.path.expanduser(path)
        if full.is_file():
            return full
        if full.is_dir():
            candidates = sorted(str(p) for p in full.rglob("*.jsonl"))
        else:
            candidates = sorted(globlib.glob(str(full), recursive=True))
        files = [Path(c) for c in candidates if Path(c).is_file()]
        if files:
            return files[0]
    return None


def _read_template(job: LoadedJob) -> str:
    assert job.spec.template_file is not None
    path = job.resolve_input(job.spec.template_file)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"template_file: {job.spec.template_file!r}: no such file (looked for {str(path)!r})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"template_file: {job.spec.template_file!r}: cannot read it: {exc}") from None


def _check_parameters(p: Parameters) -> None:
    """The client's own rules, at load time: nothing is sent with parameters TGI would refuse."""
    if p.best_of is not None and p.best_of < 1:
        raise SpecError(f"parameters.best_of: {p.best_of} must be >= 1 (or left out)")

    def checks(q: Parameters) -> None:
        check_wire({"inputs": "x", "parameters": q.to_wire()})
        check_best_of(q, Limits.unknown())
        check_parameters(q, Limits.unknown())
        check_grammar(q, Limits.unknown())

    try:
        checks(p)
    except TGIValidationError as exc:
        culprits = _culprits(p, checks)
        named = ", ".join(f"parameters.{name}: {getattr(p, name)!r}" for name in culprits) or "parameters"
        fixes = [_FIXES[name] for name in culprits if name in _FIXES]
        raise SpecError(f"{named}: {exc.message}" + "".join(f"; {fix}" for fix in fixes)) from None


#: the way out of TGI's refusals of values that other servers (OpenAI, vLLM) accept as "off" or "greedy"
_FIXES = {
    "temperature": "for greedy decoding leave temperature out (do_sample: false); to sample, give a value > 0",
    "top_p": "leave top_p out to sample from the whole distribution (TGI takes 0 < top_p < 1)",
    "typical_p": "leave typical_p out to turn typical decoding off (TGI takes 0 < typical_p < 1)",
    "top_k": "leave top_k out to keep every token (TGI takes top_k > 0)",
    "repetition_penalty": "leave repetition_penalty out (or 1.0) for no penalty",
    "max_new_tokens": "give max_new_tokens >= 1, or leave it out for the server's default",
}


def _culprits(p: Parameters, checks: typing.Callable[[Parameters], None]) -> list[str]:
    """The fields whose reset to the default makes the checks pass (the one(s) the error is about)."""
    found = []
    for name in sorted(p.model_fields_set):
        default = Parameters.model_fields[name].get_default(call_default_factory=True)
        try:
            checks(p.model_copy(update={name: default}))
        except TGIValidationError:
            continue
        found.append(name)
    return found


def _check_seed(spec: JobSpec) -> None:
    p = spec.parameters
    assert isinstance(p, Parameters)
    if p.seed is not None:
        raise SpecError(
            f"parameters.seed: {p.seed} is set by the seed policy, not by parameters; use "
            f"`seed: {{policy: fixed, value: {p.seed}}}` (or per_row) instead"
        )
    if (p.best_of or 1) > 1 and spec.seed_policy != "none":
        raise SpecError(
            f"seed.policy: {spec.seed_policy!r} cannot be used with parameters.best_of: {p.best_of} (TGI refuses a "
            "seed when best_of > 1 and gives each candidate its own); set seed.policy: none, or best_of: 1"
        )


# -- error messages -------------------------------------------------------------------------------------------


def _explain(exc: PydanticValidationError, api: str = "generate") -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"]]
        where = ".".join(loc) or "(top level)"
        kind = err["type"]
        value = err.get("input")
        if kind == "moved_parameter":  # the message names the field, the value and where it goes
            lines.append(err["msg"])
        elif kind == "extra_forbidden":
            known = _known_keys(loc[:-1], api)
            close = difflib.get_close_matches(loc[-1], known, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            if api == "generate" and loc[:1] == ["parameters"] and loc[-1] in ChatParameters.model_fields:
                hint = "it is an OpenAI name: a chat or completions job sets endpoint.api: chat|completions; " + hint
            lines.append(f"{where}: unknown key; {hint}known keys here: {', '.join(known)}")
        elif kind == "missing":
            lines.append(f"{where}: required but missing")
        else:
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {message} (given: {_short(value)})")
    return "invalid job spec:\n  " + "\n  ".join(lines)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _known_keys(loc: list[str], api: str) -> list[str]:
    model: Any = JobSpec
    for part in loc:
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        parameters = {"chat": ChatParameters, "completions": CompletionsParameters}.get(api, Parameters)
        model = parameters if model is JobSpec and part == "parameters" else _model_of(info.annotation)
    return list(getattr(model, "model_fields", {}))


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


