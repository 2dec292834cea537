"""Opening the output folder for a run: the resume check (the one ``tgbatch validate`` runs too), ``--fresh``,
``--retry-failed``, leftovers of a crash, and the checkpoint of what is already written."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tgbatch.output.checkpoint import Checkpoint
from tgbatch.output.layout import OutputDir
from tgbatch.output.manifest import Manifest, check_resume
from tgbatch.runner.control import RunOptions
from tgbatch.runner.plan import Prepared

log = logging.getLogger("tgbatch.job")


@dataclass
class Opened:
    """The output folder, ready for this run: its manifest and what is already written."""

    manifest: Manifest
    checkpoint: Checkpoint
    already_done: int
    already_failed: int


def open_output(prepared: Prepared, out: OutputDir, options: RunOptions, limit: int | None) -> Opened:
    """Check that ``out`` may be resumed by this job (``ResumeError`` otherwise), apply ``--fresh`` and
    ``--retry-failed``, write ``job.yaml`` and the manifest, and load the checkpoint. Blocking: run it in a
    worker thread."""
    job = prepared.job
    if options.fresh and not out.foreign_entries():  # a folder with others' files is refused below, not cleared
        out.clear()
    found = check_resume(out, prepared.fingerprint)
    for path in out.discard_temp_files():
        log.info("discarded a half-written file from an interrupted run: %s", path.name)
    if options.retry_failed:
        moved = out.retire_errors()
        if moved:
            log.info("--retry-failed: moved %d error shard(s) to retired/; their rows will be retried", moved)
    out.create()
    manifest = Manifest.resume(
        out,
        found.own(out),
        job=job.name,
        fingerprint=prepared.fingerprint,
        samples=job.spec.samples,
        limit=limit,
    )
    out.write_job_yaml(job.resolved_dict())
    manifest.write(complete=False, rows_selected=None)
    checkpoint = Checkpoint.load(out, options.shard)
    return Opened(
        manifest=manifest,
        checkpoint=checkpoint,
        already_done=checkpoint.done_in_shard,
        already_failed=0 if options.retry_failed else checkpoint.failed_in_shard,
    )
