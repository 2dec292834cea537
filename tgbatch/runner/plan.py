"""A job made ready to run: everything checked that can be checked without sending a request (the dataset
opened, the template compiled against its columns, the first rows rendered, the output schemas and the
fingerprint computed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tgbatch.backends.tgi.rules import Parameters
from tgbatch.errors import BadTemplateError, SpecError, TemplateError
from tgbatch.input.rows import iter_rows
from tgbatch.input.sources import Source, open_source
from tgbatch.job.fingerprint import Fingerprint
from tgbatch.job.render import Renderer, renderer_of
from tgbatch.job.response_format import format_check
from tgbatch.job.seeds import SeedPolicy
from tgbatch.job.spec import LoadedJob
from tgbatch.output.records import ChatRecords, GenerateRecords, Records, reserved_names

PREVIEW_ROWS = 3


@dataclass
class Prepared:
    """A job ready to run: everything checked that can be checked without sending a request."""

    job: LoadedJob
    source: Source
    renderer: Renderer
    read_columns: list[str] | None
    carried: list[tuple[str, str]]  # (input column, output column)
    records: Records
    fingerprint: Fingerprint
    seeds: SeedPolicy
    preview: list[tuple[str, str]]  # (row_id, the rendered input, readable) of the first rows
    notes: list[str] = field(default_factory=list)

    @property
    def data_schema(self) -> pa.Schema:
        return self.records.data_schema

    @property
    def error_schema(self) -> pa.Schema:
        return self.records.error_schema


def prepare(job: LoadedJob, *, preview_rows: int = PREVIEW_ROWS) -> Prepared:
    """Open the dataset, compile and check the template (or messages) against its columns, render the first rows
    and compute the fingerprint. Raises ``SpecError``/``TemplateError``/``DatasetError`` naming what is wrong."""
    spec = job.spec
    renderer = renderer_of(job)
    source = open_source(job)
    names = list(source.schema.names)
    if spec.dataset.id_column is not None and spec.dataset.id_column not in names:
        raise SpecError(
            f"dataset.id_column: {spec.dataset.id_column!r} is not a column of the dataset; columns: {', '.join(names)}"
        )
    renderer.check_columns(names)
    chat = spec.api != "generate"
    reserved = reserved_names(renderer.input_column if chat else None)
    carried, notes = _carried_columns(spec.dataset.columns, names, reserved)
    if renderer.uses_whole_row:
        read_columns = None
    else:
        wanted = renderer.columns_used() | {src for src, _ in carried}
        if spec.dataset.id_column is not None:
            wanted.add(spec.dataset.id_column)
        read_columns = [n for n in names if n in wanted]
    carried_fields = [source.schema.field(src).with_name(dst) for src, dst in carried]
    records: Records
    if isinstance(spec.parameters, Parameters):
        records = GenerateRecords(carried, carried_fields, spec.output.details)
    else:
        response_format = spec.parameters.response_format
        check = format_check(response_format) if response_format is not None else None
        records = ChatRecords(renderer.input_column, carried, carried_fields, check)
    preview = _preview(source, renderer, read_columns, spec.dataset.id_column, preview_rows)
    policy = spec.seed_policy
    return Prepared(
        job=job,
        source=source,
        renderer=renderer,
        read_columns=read_columns,
        carried=carried,
        records=records,
        fingerprint=_fingerprint(job, source, carried),
        seeds=SeedPolicy(policy, spec.seed.value),
        preview=preview,
        notes=notes,
    )


def _preview(
    source: Source, renderer: Renderer, columns: list[str] | None, id_column: str | None, rows: int
) -> list[tuple[str, str]]:
    """The first rows rendered: failing on the very first rows, the template (not the data) is wrong."""
    preview = []
    for batch in iter_rows(source, columns=columns, id_column=id_column, limit=rows):
        for row_id, row in zip(batch.row_ids, batch.rows, strict=True):
            try:
                preview.append((row_id, renderer.render(row, row_id).show()))
            except TemplateError as exc:
                if renderer.templated:
                    raise BadTemplateError(str(exc)) from exc
                preview.append((row_id, f"(this row goes to errors/: {exc})"))
    return preview


def _fingerprint(job: LoadedJob, source: Source, carried: list[tuple[str, str]]) -> Fingerprint:
    spec = job.spec
    policy = spec.seed_policy
    template: str | list[str] | None = None
    if spec.messages is None and spec.messages_column is None:
        # the null policy changes prompts only where a value is null; a default policy leaves the digest as it was
        template = job.template_text if spec.template_nulls == "error" else [job.template_text, spec.template_nulls]
    params = spec.parameters
    chat = None
    if isinstance(params, Parameters):
        parameters = {k: v for k, v in params.to_wire().items() if k != "details"}
    else:
        parameters = params.model_dump(mode="json", exclude_unset=True)  # extra_body included
        messages: Any = None
        if spec.messages is not None:
            messages = [m.model_dump() for m in spec.messages] + [spec.template_nulls]
        elif spec.messages_column is not None:
            messages = {"column": spec.messages_column}
        chat = {"api": spec.api, "messages": messages, "model": spec.endpoint.model}
    return Fingerprint.of(
        dataset={**source.identity, "id_column": spec.dataset.id_column, "columns": carried},
        template=template,
        parameters=parameters,
        seed={"policy": policy, "value": spec.seed.value if policy in ("fixed", "per_row") else None},
        samples=spec.samples,
        chat=chat,
    )


def _carried_columns(
    wanted: list[str] | None, names: list[str], reserved: frozenset[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    notes: list[str] = []
    if wanted is not None:
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise SpecError(
                f"dataset.columns: {unknown[0]!r} is not a column of the dataset; columns: {', '.join(names)}"
            )
        clash = [c for c in wanted if c in reserved]
        if clash:
            raise SpecError(
                f"dataset.columns: {clash[0]!r} clashes with the output column of that name; leave it out of "
                f"dataset.columns (output columns: {', '.join(sorted(reserved))})"
            )
        return [(c, c) for c in dict.fromkeys(wanted)], notes
    carried = []
    taken = set(names) | reserved
    for name in names:
        if name in reserved:
            new = f"input_{name}"
            while new in taken:
                new = f"input_{new}"
            taken.add(new)
            notes.append(f"input column {name!r} is carried as {new!r} ({name!r} is an output column)")
            carried.append((name, new))
        else:
            carried.append((name, name))
    return carried, notes


