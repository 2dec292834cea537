"""Scoring an output folder, sending no request: reads ``data/`` and ``errors/`` (never writes them), writes
``scores/<kind>-<shard>.parquet`` (``row_id``, ``sample``, ``extracted``, one column per metric: null where
unscored) and ``scores.json``, each atomically; score files of shards that are gone are removed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from tgbatch.errors import OutputError, SpecError
from tgbatch.job.location import Location
from tgbatch.output.layout import OutputDir
from tgbatch.output.store import Store, open_store
from tgbatch.score.metrics import Scorer, golds_of
from tgbatch.score.results import Results
from tgbatch.score.spec import ScoreSpec

SCORES_DIR = "scores"
SCORES_JSON = "scores.json"


def read_job(root: Location) -> dict[str, Any]:
    """The folder's ``job.yaml`` (the resolved spec), or ``OutputError`` when DIR is no tgbatch output folder."""
    store = open_store(root)
    try:
        text = store.read_bytes("job.yaml").decode("utf-8")
    except FileNotFoundError:
        raise OutputError(
            f"{store.describe()!r} is not a tgbatch output folder (no job.yaml); give a job's output folder"
        ) from None
    except OSError as exc:
        raise OutputError(f"cannot read {store.describe('job.yaml')!r}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OutputError(f"cannot read {store.describe('job.yaml')!r}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def load_score_spec(data: Any, where: str) -> ScoreSpec:
    """A ``ScoreSpec`` from a mapping (the section itself, or a mapping with a ``score:`` key)."""
    if isinstance(data, dict) and isinstance(data.get("score"), dict):
        data = data["score"]
    try:
        return ScoreSpec.model_validate(data)
    except PydanticValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in ("score", *err["loc"]))
            if err["type"] == "extra_forbidden":
                lines.append(f"{loc}: unknown key; known keys: {', '.join(ScoreSpec.model_fields)}")
            else:
                lines.append(f"{loc}: {err['msg'].removeprefix('Value error, ')} (given: {err.get('input')!r})")
        raise SpecError(f"invalid score spec in {where}:\n  " + "\n  ".join(lines)) from None


def resolve_spec(root: Location, spec_file: Path | None) -> tuple[ScoreSpec, int]:
    """The spec to score with (``spec_file``, else the job's ``score:``) and the job's samples per prompt."""
    job = read_job(root)
    samples = int(job.get("samples") or 1)
    if spec_file is not None:
        try:
            data = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError(f"--spec: cannot read {str(spec_file)!r}: {exc}") from exc
        spec = load_score_spec(data, str(spec_file))
    elif job.get("score") is not None:
        spec = load_score_spec(job["score"], open_store(root).describe("job.yaml"))
    else:
        raise SpecError(f"{str(root)!r}: the job has no `score:` section; give one with --spec FILE")
    try:
        spec.check_samples(samples)
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    return spec, samples


def score_folder(root: Location, spec: ScoreSpec, *, failed_as_wrong: bool = False) -> dict[str, dict[str, Any]]:
    """Score every committed row of ``root``, write ``scores/`` and ``scores.json``, return the summary."""
    out = OutputDir(root)
    store = out.store
    scorer = Scorer(spec)
    results = Results(spec, failed_as_wrong=failed_as_wrong)
    tables: dict[str, Any] = {}
    done: set[tuple[str, int]] = set()
    for name in out.committed_names("data"):
        tables[f"data-{_base(name)}"] = _score_data(store, name, spec, scorer, results, done)
    for name in out.committed_names("errors"):
        tables[f"errors-{_base(name)}"] = _score_failed(store, name, spec, results, done, failed_as_wrong)
    summary = results.summary()
    store.makedirs(SCORES_DIR)
    for name, table in tables.items():
        store.write_table(f"{SCORES_DIR}/{name}", table)
    for stale in store.names(SCORES_DIR):
        if stale.endswith(".parquet") and stale not in tables:
            store.delete(f"{SCORES_DIR}/{stale}")
    store.write_bytes(SCORES_JSON, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    return summary


def _base(name: str) -> str:
    return name.rpartition("/")[2]


def _read(store: Store, name: str, columns: list[str], reference: str | None) -> list[dict[str, Any]]:
    schema = store.read_schema(name)
    if reference is not None and reference not in schema.names:
        carried = [n for n in schema.names if n not in ("row_id", "sample", "generated_text")]
        raise SpecError(
            f"score.reference: {reference!r} is not a column of {name}; its columns: "
            f"{', '.join(carried)} (a carried input column renamed off a clash is `input_<name>`)"
        )
    wanted = [*columns, *([reference] if reference is not None else [])]
    return store.read_table(name, columns=wanted).to_pylist()


def _score_data(
    store: Store, name: str, spec: ScoreSpec, scorer: Scorer, results: Results, done: set[tuple[str, int]]
) -> Any:
    rows = _read(store, name, ["row_id", "sample", "generated_text"], spec.reference)
    columns: dict[str, list[Any]] = {"row_id": [], "sample": [], "extracted": [], **{m: [] for m in spec.metrics}}
    for row in rows:
        key = (row["row_id"], row["sample"])
        done.add(key)
        golds = golds_of(row[spec.reference]) if spec.reference is not None else None
        columns["row_id"].append(key[0])
        columns["sample"].append(key[1])
        if spec.reference is not None and golds is None:
            results.add_unscorable(*key)
            columns["extracted"].append(None)
            for metric in spec.metrics:
                columns[metric].append(None)
            continue
        score = scorer.score(row["generated_text"] or "", golds)
        results.add_scored(*key, score)
        columns["extracted"].append(score.extracted)
        for metric in spec.metrics:
            columns[metric].append(score.values[metric])
    return _table(columns, spec)


def _score_failed(
    store: Store, name: str, spec: ScoreSpec, results: Results, done: set[tuple[str, int]], failed_as_wrong: bool
) -> Any:
    columns: dict[str, list[Any]] = {"row_id": [], "sample": [], "extracted": [], **{m: [] for m in spec.metrics}}
    for row in _read(store, name, ["row_id", "sample"], None):
        key = (row["row_id"], row["sample"])
        if key in done:  # generated later (a --retry-failed run): the data row counts
            continue
        results.add_failed(*key)
        columns["row_id"].append(key[0])
        columns["sample"].append(key[1])
        columns["extracted"].append(None)
        for metric in spec.metrics:
            columns[metric].append(0.0 if failed_as_wrong else None)
    return _table(columns, spec)


def _table(columns: dict[str, list[Any]], spec: ScoreSpec) -> Any:
    import pyarrow as pa

    schema = pa.schema(
        [
            pa.field("row_id", pa.string(), nullable=False),
            pa.field("sample", pa.int32(), nullable=False),
            pa.field("extracted", pa.string()),
            *(pa.field(m, pa.float64()) for m in spec.metrics),
        ]
    )
    return pa.table(columns, schema=schema)
