"""The runner's parts on their own: row ids and shards, seeds, the reader's formats, the template, the retry
policy, the atomic writer and the checkpoint. No server involved."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tgbatch.errors import (
    AuthenticationError,
    BadRequestError,
    DatasetError,
    GenerationError,
    IncompleteGenerationError,
    ModelLoadingError,
    NotFoundError,
    OverloadedError,
    RateLimitError,
    ServiceUnavailableError,
    TemplateError,
    TransportError,
    ValidationError,
)
from tgbatch.input.keys import KeySet, in_shard, row_hash, row_hashes, row_keys
from tgbatch.input.rows import iter_rows
from tgbatch.input.sources import open_source
from tgbatch.job.load import load_job_data
from tgbatch.job.seeds import SeedPolicy
from tgbatch.job.spec import RetrySpec
from tgbatch.job.template import PromptTemplate
from tgbatch.output.atomic import commit_table, temp_path, write_atomic
from tgbatch.output.checkpoint import Checkpoint
from tgbatch.output.layout import OutputDir
from tgbatch.output.schema import output_schemas
from tgbatch.runner.retry import GaveUp, RetryPolicy, is_retryable

from .runner_util import prompts, write_jsonl

# -- ids, shards, key sets -------------------------------------------------------------------------------------


def test_row_hash_is_stable_and_unsalted() -> None:
    # fixed values: the same on every machine and Python (a salted hash() would change per process)
    assert row_hash("r00001") == row_hashes(["r00001"])[0] == 0x315A80E2A2D78E35
    assert row_hash("0") == 0x75DFCD439D7D2B84
    assert row_hash("a") != row_hash("b")


def test_shards_partition_the_rows() -> None:
    h = row_hashes([str(i) for i in range(3000)])
    masks = [in_shard(h, i, 3) for i in range(3)]
    assert (sum(m.astype(int) for m in masks) == 1).all()
    assert all(800 < m.sum() < 1200 for m in masks)


def test_keyset_membership_and_merging() -> None:
    rng = np.random.default_rng(0)
    keys = KeySet()
    added = []
    for _ in range(40):
        chunk = rng.integers(0, 2**63, size=(int(rng.integers(1, 300)), 2), dtype=np.uint64)
        keys.add(chunk)
        added.append(chunk)
    everything = np.concatenate(added)
    assert keys.contains(everything).all()
    assert len(keys) == len(everything)
    assert len(keys._runs) <= 10  # merged, log-structured
    others = rng.integers(2**63, 2**64 - 1, size=(500, 2), dtype=np.uint64)
    assert not keys.contains(others).any()


def test_row_keys_are_128_bit_and_stable() -> None:
    k = row_keys(["x", "y", "x"])
    assert k.shape == (3, 2) and k.dtype == np.uint64
    assert (k[0] == k[2]).all() and not (k[0] == k[1]).all()
    assert k[0].tolist() == row_keys(["x"])[0].tolist() == [0xD9CBA6D2C297CD3E, 0x10C541603BC03E2F]


# -- seeds --------------------------------------------------------------------------------------------------------


def test_seed_policies() -> None:
    assert SeedPolicy("none").seed_for("r", 0) is None
    assert [SeedPolicy("fixed", 7).seed_for("r", k) for k in range(3)] == [7, 8, 9]
    assert SeedPolicy("fixed", 2**64 - 1).seed_for("r", 1) == 0
    per_row = SeedPolicy("per_row", 42)
    a = per_row.seed_for("row-1", 0)
    assert a == 13661050631176071905  # a fixed function of (value, row id, sample): stable across resumes
    assert a != per_row.seed_for("row-1", 1) != per_row.seed_for("row-2", 0)
    assert a != SeedPolicy("per_row", 43).seed_for("row-1", 0)
    assert 0 <= a < 2**64
    randoms = {SeedPolicy("random").seed_for("r", 0) for _ in range(20)}
    assert len(randoms) == 20


# -- reader -------------------------------------------------------------------------------------------------------


def _job(path: Path | str, **dataset: Any) -> Any:
    return load_job_data(
        {"dataset": {"path": str(path), **dataset}, "template": "{{ question }}", "endpoint": {"url": "sim://"}}
    )


def _all_ids(source: Any, **kwargs: Any) -> list[str]:
    kwargs.setdefault("columns", None)
    kwargs.setdefault("id_column", None)
    return [rid for batch in iter_rows(source, **kwargs) for rid in batch.row_ids]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "arrow-stream", "arrow-file"])
def test_reader_formats_and_positions(tmp_path: Path, fmt: str) -> None:
    rows = prompts(2500)
    table = pa.Table.from_pylist(rows)
    ext = fmt.split("-")[0]
    path = tmp_path / f"data.{ext}"
    if fmt == "jsonl":
        write_jsonl(path, rows)
    elif fmt == "csv":
        pacsv.write_csv(table, path)
    elif fmt == "parquet":
        pq.write_table(table, path, row_group_size=300)
    elif fmt == "arrow-stream":
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=700)
    else:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=700)
    source = open_source(_job(path))
    assert source.count_rows() == 2500
    assert _all_ids(source) == [str(i) for i in range(2500)]  # positions, in input order
    got = [row for batch in iter_rows(source, columns=["id", "question"], id_column="id") for row in batch.rows]
    assert got[1234] == {"id": "r01234", "question": "What is 1234 plus 1234?"}
    assert _all_ids(source, limit=10) == [str(i) for i in range(10)]


def test_reader_folder_glob_and_saved_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    rows = prompts(30)
    write_jsonl(folder / "a.jsonl", rows[:10])
    write_jsonl(folder / "b.jsonl", rows[10:])
    ids = lambda src: _all_ids(src, id_column="id")  # noqa: E731
    assert ids(open_source(_job(folder))) == [r["id"] for r in rows]
    assert ids(open_source(_job(tmp_path / "parts" / "*.jsonl"))) == [r["id"] for r in rows]

    import datasets

    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(saved))
    source = open_source(_job(saved))
    assert source.kind == "saved" and source.count_rows() == 30
    assert ids(source) == [r["id"] for r in rows]
    from tgbatch.errors import SpecError

    with pytest.raises(SpecError, match=r"dataset\.split"):
        open_source(_job(saved, split="test"))


def test_reader_shards_and_errors(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", prompts(500))
    source = open_source(_job(path))
    whole = _all_ids(source, id_column="id")
    parts = [_all_ids(source, id_column="id", shard=(i, 3)) for i in range(3)]
    assert sorted(rid for part in parts for rid in part) == sorted(whole)
    assert not set(parts[0]) & set(parts[1])

    dup = write_jsonl(tmp_path / "dup.jsonl", [{"id": "a", "question": "x"}, {"id": "b"}, {"id": "a"}])
    with pytest.raises(DatasetError, match="not unique: 'a'"):
        _all_ids(open_source(_job(dup)), id_column="id")
    nulls = write_jsonl(tmp_path / "nulls.jsonl", [{"id": "a", "question": "x"}, {"id": None, "question": "y"}])
    with pytest.raises(DatasetError, match="position 1"):
        _all_ids(open_source(_job(nulls)), id_column="id")
    array = tmp_path / "array.json"
    array.write_text('[{"question": "x"}]')
    with pytest.raises(DatasetError, match="JSON Lines"):
        open_source(_job(array))


# -- template -----------------------------------------------------------------------------------------------------


def test_template_strict_and_helpful() -> None:
    t = PromptTemplate('{{ q }} ({{ row["my-col"] }}, {{ row_id }})')
    assert t.render({"q": "hi", "my-col": 1}, "r1") == "hi (1, r1)"
    assert t.uses_whole_row
    with pytest.raises(TemplateError, match=r"\{\{ missing \}\}"):
        PromptTemplate("{{ missing }}").check_columns(["q"])
    with pytest.raises(TemplateError, match="line 2"):
        PromptTemplate("ok\n{% if %}")
    with pytest.raises(TemplateError, match="cannot render row 'r9'"):
        PromptTemplate("{{ q.nope.deeper }}").render({"q": None}, "r9")
    assert PromptTemplate("a\n").render({}, "x") == "a"  # the YAML block's final newline


# -- retry --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (OverloadedError("x", status_code=429), True),
        (RateLimitError("x", status_code=429), True),
        (ModelLoadingError("x", status_code=503, retry_after=20.0), True),
        (ServiceUnavailableError("x", status_code=502), True),
        (GenerationError("x", status_code=424), True),
        (IncompleteGenerationError("x", status_code=500), True),
        (TransportError("x"), True),
        (ValidationError("x"), False),
        (BadRequestError("x", status_code=413), False),
        (AuthenticationError("x", status_code=401), False),
        (NotFoundError("x", status_code=404), False),
    ],
)
def test_retry_classification(error: Exception, retryable: bool) -> None:
    assert is_retryable(error) is retryable


def test_retry_waits_honour_hints_capped() -> None:
    policy = RetryPolicy(RetrySpec(initial_wait_s=1, max_wait_s=10), rng=random.Random(0))
    hinted = policy.wait_for(1, ModelLoadingError("x", retry_after=4.0))
    assert 4.0 <= hinted <= 4.4
    assert 10.0 <= policy.wait_for(1, RateLimitError("x", retry_after=3600.0)) <= 11.0
    waits = [policy.wait_for(n, OverloadedError("x")) for n in range(1, 8)]
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0
    assert all(w <= 10.0 for w in waits) and waits[-1] >= 5.0


@pytest.mark.anyio
async def test_retry_policy_retries_then_gives_up() -> None:
    calls: list[int] = []
    retried: list[BaseException] = []
    policy = RetryPolicy(RetrySpec(attempts=3, initial_wait_s=0, max_wait_s=0), on_retry=retried.append)

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OverloadedError("busy", status_code=429)
        return "ok"

    assert await policy.call(flaky) == ("ok", 3)
    assert len(retried) == 2

    async def broken() -> str:
        raise TransportError("connection refused")

    with pytest.raises(GaveUp) as info:
        await policy.call(broken)
    assert info.value.attempts == 3 and isinstance(info.value.error, TransportError)

    async def invalid() -> str:
        calls.append(1)
        raise ValidationError("Input validation error: bad")

    before = len(calls)
    with pytest.raises(GaveUp) as info:
        await policy.call(invalid)
    assert info.value.attempts == 1 and len(calls) == before + 1

    async def unauthorized() -> str:
        raise AuthenticationError("no", status_code=401)

    with pytest.raises(AuthenticationError):
        await policy.call(unauthorized)


@pytest.mark.anyio
async def test_overload_answers_use_time_not_attempts() -> None:
    # 429/503 are the server's state: they do not use up the row's attempts, only its max_elapsed_s
    policy = RetryPolicy(RetrySpec(attempts=2, initial_wait_s=0, max_wait_s=0), pooled=True)
    answers: list[BaseException | None] = [
        OverloadedError("Model is overloaded", status_code=429),
        RateLimitError("Rate limit reached", status_code=429),
        ModelLoadingError("Model x is currently loading", status_code=503, retry_after=0.0),
        ServiceUnavailableError("proxy", status_code=503),
        TransportError("reset"),  # the one charged failure of two allowed
        None,
    ]

    async def storm() -> str:
        error = answers.pop(0)
        if error is not None:
            raise error
        return "ok"

    assert await policy.call(storm) == ("ok", 6)

    always = RetryPolicy(RetrySpec(attempts=2, initial_wait_s=0, max_wait_s=0, max_elapsed_s=0.05), pooled=True)

    async def overloaded() -> str:
        raise OverloadedError("Model is overloaded", status_code=429)

    with pytest.raises(GaveUp) as info:
        await always.call(overloaded)
    assert info.value.attempts > 2 and isinstance(info.value.error, OverloadedError)


# -- writer and checkpoint ------------------------------------------------------------------------------------------


def _record(row_id: str, sample: int = 0, **extra: Any) -> dict[str, Any]:
    return {"row_id": row_id, "sample": sample, "prompt": "p", "generated_text": "g", "seed": 2**64 - 1, **extra}


def test_temp_names_are_unique_per_call_and_recognised_by_the_layout(tmp_path: Path) -> None:
    # shard processes started together all write the shared job.yaml: one temp name for all of them let one
    # process rename the file another was still writing
    target = tmp_path / "job.yaml"
    names = {temp_path(target).name for _ in range(100)}
    assert len(names) == 100
    assert all(n.startswith(".job.yaml.") and n.endswith(".tmp") for n in names)
    out = OutputDir(tmp_path / "out", (1, 4))
    out.create()
    for name in (temp_path(out.manifest_path).name, temp_path(out.shard_path("data", 3)).name):
        (out.root / ("data" if name.startswith(".part") else "") / name).write_bytes(b"half")
    other = temp_path(OutputDir(out.root, (2, 4)).manifest_path)  # another shard's: not ours to remove
    other.write_bytes(b"half")
    (out.root / temp_path(out.root / "job.yaml").name).write_bytes(b"half")
    assert out.foreign_entries() == []  # tgbatch's own temp files, whatever their pid and token
    assert sorted(p.name.split(".")[1] for p in out.discard_temp_files()) == ["manifest-1of4", "part-1of4-000003"]
    assert other.exists()
    write_atomic(target, b"x")
    assert target.read_bytes() == b"x" and not list(tmp_path.glob(".*.tmp"))


def test_commit_is_atomic_and_checkpoint_reads_it(tmp_path: Path) -> None:
    out = OutputDir(tmp_path / "out", (0, 1))
    out.create()
    data_schema, error_schema = output_schemas([pa.field("topic", pa.string())])
    table = pa.Table.from_pylist([_record(f"r{i}", topic="t") for i in range(5)], schema=data_schema)
    commit_table(table, out.shard_path("data", 0))
    errors = pa.Table.from_pylist([{"row_id": "r9", "sample": 1, "error_type": "ValidationError"}], schema=error_schema)
    commit_table(errors, out.shard_path("errors", 1))
    (out.root / "data" / ".part-0of1-000002.parquet.tmp").write_bytes(b"half a file")
    assert [p.name for p in out.discard_temp_files()] == [".part-0of1-000002.parquet.tmp"]
    assert out.next_seq() == 2

    read = pq.read_table(out.shard_path("data", 0))
    assert read.schema.field("seed").type == pa.uint64() and read.column("seed")[0].as_py() == 2**64 - 1

    cp = Checkpoint.load(out)
    h = row_keys(["r0", "r4", "r5", "r9"])
    assert cp.pending(h, 0).tolist() == [False, False, True, True]
    assert cp.pending(h, 1).tolist() == [True, True, True, False]
    assert cp.pending(h, 1, retry_failed=True).tolist() == [True, True, True, True]
    assert (cp.done_in_shard, cp.failed_in_shard) == (5, 1)
