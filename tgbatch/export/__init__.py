"""``tgbatch export``: an output folder's ``data/`` rows as training data (TRL, axolotl) or plain files.

``export_folder(root, fmt, path, ...)`` reads the committed rows (never ``errors/``), keeps those matching the
``--where`` filters, builds the format's records (``FORMATS``, one entry per ``--format``) and writes them
atomically. It raises ``ExportError`` (exit 2) for a format that does not fit the job, an unknown column, a
ranking with nothing to rank by.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tgbatch.errors import ExportError
from tgbatch.export.formats import FORMATS, REASONING_AS, ExportInput, Format, get_format
from tgbatch.export.source import MinScore, Where, job_api, read_data, read_scores, select
from tgbatch.export.write import write_jsonl, write_parquet
from tgbatch.job.location import Location

__all__ = ["FORMATS", "REASONING_AS", "ExportInput", "Format", "Where", "export_folder"]


def export_folder(
    root: Location,
    fmt_name: str,
    path: Path,
    *,
    where: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    reasoning_as: str = "none",
    rank_by: str | None = None,
    min_score: Sequence[str] = (),
) -> int:
    """Write ``root``'s rows as ``fmt_name`` to ``path``; returns the number of records written."""
    if fmt_name == "openai-batch":  # one line per row with every sample and error: not a per-row record format
        from tgbatch.export.openai_batch import write_openai_batch

        return write_openai_batch(root, path)
    if reasoning_as not in REASONING_AS:
        raise ExportError(f"--reasoning-as {reasoning_as!r}: choose one of {', '.join(REASONING_AS)}")
    table = read_data(root)
    api = job_api(root)
    fmt = get_format(fmt_name, api)
    if rank_by is not None and "rank_by" not in fmt.options:
        raise ExportError(f"--rank-by applies to the preference formats (dpo, dpo-axolotl), not {fmt_name}")
    filters = [Where.parse(item) for item in where]
    minimums = [MinScore.parse(item) for item in min_score]
    if minimums and "rank_by" in fmt.options:
        raise ExportError(
            f"--min-score does not apply to {fmt_name}: a preference pair needs its worse sample too; "
            "rank the samples with --rank-by METRIC instead"
        )
    scores = read_scores(root) if rank_by is not None or minimums else None
    for minimum in minimums:
        table = minimum.keep(table, scores)
    if fmt.build is None:
        rows = select(table, filters, columns)
        if fmt.suffix == ".parquet":
            return write_parquet(rows, path)
        return write_jsonl(rows.to_pylist(), path)
    rows = select(table, filters, None)
    select(table, [], columns)  # checks the extra columns' names
    inp = ExportInput(
        root=root,
        api=api,
        rows=rows.to_pylist(),
        reasoning_as=reasoning_as,
        rank_by=rank_by,
        scores=scores,
        extra_columns=tuple(columns or ()),
    )
    records = fmt.build(inp)
    if path.suffix == ".parquet":
        import pyarrow as pa

        return write_parquet(pa.Table.from_pylist(list(records)), path)
    return write_jsonl(records, path)
