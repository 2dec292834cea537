"""What an export reads: the committed ``data/`` rows of an output folder (never ``errors/``: a failed row has
no answer to train on), the job's api from ``job.yaml``, the ``--where`` filters and the scores, if any."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from tgbatch.errors import ExportError
from tgbatch.job.location import Location
from tgbatch.output.layout import OutputDir
from tgbatch.output.store import open_store

if TYPE_CHECKING:
    import pyarrow as pa

#: (row_id, sample) -> that sample's score columns
Scores = dict[tuple[str, int], dict[str, Any]]


@dataclass(frozen=True)
class Where:
    """``--where COLUMN=VALUE``: keep the rows whose column equals the value (read as YAML: ``stop``, ``true``,
    ``3``), or whose value printed equals the text as written (a row id ``007``)."""

    column: str
    text: str

    @classmethod
    def parse(cls, item: str) -> Where:
        column, sep, text = item.partition("=")
        if not sep or not column.strip():
            raise ExportError(f"--where {item!r}: expected COLUMN=VALUE, e.g. --where finish_reason=stop")
        return cls(column.strip(), text)

    def matches(self, value: Any) -> bool:
        try:
            parsed = yaml.safe_load(self.text)
        except yaml.YAMLError:
            parsed = self.text
        return value == parsed or (value is not None and str(value) == self.text)


def job_api(root: Location) -> str:
    """``generate``, ``chat`` or ``completions``: what the job's ``endpoint.api`` was (``job.yaml``)."""
    store = open_store(root)
    try:
        spec = yaml.safe_load(store.read_bytes("job.yaml").decode("utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ExportError(f"cannot read {store.describe('job.yaml')!r} ({exc}): give a tgbatch output folder") from exc
    api = (spec.get("endpoint") or {}).get("api")
    if api is None:  # a folder written before chat jobs existed: /generate with a template
        api = "chat" if spec.get("messages") or spec.get("messages_column") else "generate"
    return str(api)


def read_data(root: Location) -> pa.Table:
    """Every committed ``data/`` shard of ``root`` as one table."""
    import pyarrow as pa

    out = OutputDir(root)
    if not out.store.exists():
        raise ExportError(f"{out.describe()!r}: no such folder (give a job's output folder, e.g. runs/<job name>)")
    names = out.committed_names("data")
    if not names and "job.yaml" not in out.store.names():
        raise ExportError(f"{out.describe()!r} is not a tgbatch output folder (no job.yaml and no data/)")
    if not names:
        raise ExportError(f"{out.describe()!r} has no committed rows in data/ yet: nothing to export")
    return pa.concat_tables([out.store.read_table(name) for name in names], promote_options="default")


def select(table: pa.Table, where: Sequence[Where], columns: Sequence[str] | None) -> pa.Table:
    """The rows matching every filter, with ``columns`` (all when None), each name checked against the table."""
    import pyarrow as pa

    for name in [w.column for w in where] + list(columns or []):
        if name not in table.column_names:
            raise ExportError(
                f"column {name!r} does not exist in this output; its columns are: {', '.join(table.column_names)}"
            )
    if where:
        keep = [True] * table.num_rows
        for w in where:
            values = table.column(w.column).to_pylist()
            keep = [k and w.matches(v) for k, v in zip(keep, values, strict=True)]
        table = table.filter(pa.array(keep, type=pa.bool_()))
    return table.select(list(columns)) if columns else table


def read_scores(root: Location) -> Scores | None:
    """``DIR/scores/*.parquet`` (written by ``tgbatch score``) by (row_id, sample), or None without it."""
    import pyarrow as pa

    store = open_store(root)
    names = [f"scores/{n}" for n in store.names("scores") if n.endswith(".parquet")]
    if not names:
        return None
    table = pa.concat_tables([store.read_table(name) for name in names], promote_options="default")
    return {(str(r["row_id"]), int(r["sample"])): r for r in table.to_pylist()}


@dataclass(frozen=True)
class MinScore:
    """``--min-score METRIC=X``: keep the samples whose score (``DIR/scores/``) is at least X; an unscored sample
    is not kept (nothing says it is good)."""

    metric: str
    threshold: float

    @classmethod
    def parse(cls, item: str) -> MinScore:
        metric, sep, text = item.partition("=")
        try:
            threshold = float(text)
        except ValueError:
            threshold = float("nan")
        if not sep or not metric.strip() or threshold != threshold:
            raise ExportError(f"--min-score {item!r}: expected METRIC=NUMBER, e.g. --min-score exact_match=1")
        return cls(metric.strip(), threshold)

    def keep(self, table: pa.Table, scores: Scores | None) -> pa.Table:
        import pyarrow as pa

        if scores is None:
            raise ExportError(
                f"--min-score {self.metric}: DIR/scores/ does not exist; run `tgbatch score DIR` first"
            )
        known = {name for entry in scores.values() for name in entry} - {"row_id", "sample", "extracted"}
        if self.metric not in known:
            raise ExportError(
                f"--min-score {self.metric!r}: not a score of this folder; its scores: {', '.join(sorted(known))}"
            )
        keep = []
        for row_id, sample in zip(table.column("row_id").to_pylist(), table.column("sample").to_pylist(), strict=True):
            value = (scores.get((str(row_id), int(sample))) or {}).get(self.metric)
            keep.append(value is not None and value >= self.threshold)
        return table.filter(pa.array(keep, type=pa.bool_()))
