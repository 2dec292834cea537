"""A job made ready to run: everything checked that can be checked without sending a request (the dataset
opened, the template compiled against its columns, the first rows rendered, the output schemas and the
fingerprint computed)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from tgbatch.errors import BadTemplateError, SpecError, TemplateError
from tgbatch.input.rows import iter_rows
from tgbatch.input.sources import Source, open_source
from tgbatch.job.fingerprint import Fingerprint
from tgbatch.job.seeds import SeedPolicy
from tgbatch.job.spec import LoadedJob
from tgbatch.job.template import PromptTemplate
from tgbatch.output.schema import RESERVED_NAMES, output_schemas

PREVIEW_ROWS = 3


@dataclass
class Prepared:
    """A job ready to run: everything checked that can be checked without sending a request."""

    job: LoadedJob
    source: Source
    template: PromptTemplate
    read_columns: list[str] | None
    carried: list[tuple[str, str]]  # (input column, output column)
    data_schema: pa.Schema
    error_schema: pa.Schema
    fingerprint: Fingerprint
    seeds: SeedPolicy
    preview: list[tuple[str, str]]  # (row_id, prompt) of the first rows
    notes: list[str] = field(default_factory=list)


def prepare(job: LoadedJob, *, preview_rows: int = PREVIEW_ROWS) -> Prepared:
    """Open the dataset, compile and check the template against its columns, render the first rows and compute
    the fingerprint. Raises ``SpecError``/``TemplateError``/``DatasetError`` naming what is wrong."""
    spec = job.spec
    template = PromptTemplate(job.template_text, nulls=spec.template_nulls)
    source = open_source(job)
    names = list(source.schema.names)
    if spec.dataset.id_column is not None and spec.dataset.id_column not in names:
        raise SpecError(
            f"dataset.id_column: {spec.dataset.id_column!r} is not a column of the dataset; columns: {', '.join(names)}"
        )
    template.check_columns(names)
    carried, notes = _carried_columns(spec.dataset.columns, names)
    if template.uses_whole_row:
        read_columns = None
    else:
        wanted = template.columns_used() | {src for src, _ in carried}
        if spec.dataset.id_column is not None:
            wanted.add(spec.dataset.id_column)
        read_columns = [n for n in names if n in wanted]
    data_schema, error_schema = output_schemas([source.schema.field(src).with_name(dst) for src, dst in carried])
    preview = []
    for batch in iter_rows(source, columns=read_columns, id_column=spec.dataset.id_column, limit=preview_rows):
        for row_id, row in zip(batch.row_ids, batch.rows, strict=True):
            try:
                preview.append((row_id, template.render(row, row_id)))
            except TemplateError as exc:  # failing on the very first rows: the template, not the data, is wrong
                raise BadTemplateError(str(exc)) from exc
    policy = spec.seed_policy
    fingerprint = Fingerprint.of(
        dataset={**source.identity, "id_column": spec.dataset.id_column, "columns": carried},
        # the null policy changes prompts only where a value is null; a default policy leaves the digest as it was
        template=job.template_text if spec.template_nulls == "error" else [job.template_text, spec.template_nulls],
        parameters={k: v for k, v in spec.parameters.to_wire().items() if k != "details"},
        seed={"policy": policy, "value": spec.seed.value if policy in ("fixed", "per_row") else None},
        samples=spec.samples,
    )
    return Prepared(
        job=job,
        source=source,
        template=template,
        read_columns=read_columns,
        carried=carried,
        data_schema=data_schema,
        error_schema=error_schema,
        fingerprint=fingerprint,
        seeds=SeedPolicy(policy, spec.seed.value),
        preview=preview,
        notes=notes,
    )


def _carried_columns(wanted: list[str] | None, names: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    notes: list[str] = []
    if wanted is not None:
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise SpecError(
                f"dataset.columns: {unknown[0]!r} is not a column of the dataset; columns: {', '.join(names)}"
            )
        clash = [c for c in wanted if c in RESERVED_NAMES]
        if clash:
            raise SpecError(
                f"dataset.columns: {clash[0]!r} clashes with the output column of that name; leave it out of "
                f"dataset.columns (output columns: {', '.join(sorted(RESERVED_NAMES))})"
            )
        return [(c, c) for c in dict.fromkeys(wanted)], notes
    carried = []
    taken = set(names) | RESERVED_NAMES
    for name in names:
        if name in RESERVED_NAMES:
            new = f"input_{name}"
            while new in taken:
                new = f"input_{new}"
            taken.add(new)
            notes.append(f"input column {name!r} is carried as {new!r} ({name!r} is an output column)")
            carried.append((name, new))
        else:
            carried.append((name, name))
    return carried, notes


