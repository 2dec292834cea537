"""How a run is started, stopped and reported: its options, the stop switch and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from tgbatch.errors import JobError
from tgbatch.job.location import Location
from tgbatch.output.shards import CommittedFile

StopKind = Literal["signal", "budget", "fatal"]


@dataclass
class RunOptions:
    """What a run does beyond the job spec (the ``tgbatch run`` flags)."""

    shard: tuple[int, int] = (0, 1)
    limit: int | None = None  # overrides dataset.limit when set
    fresh: bool = False
    retry_failed: bool = False
    drain_s: float = 20.0  # below the usual 30 s before SIGKILL (Slurm KillWait, Kubernetes grace period)
    max_runtime_s: float | None = None
    max_new_tokens_total: int | None = None


class RunControl:
    """Lets the caller (the CLI's signal handler), a budget or a fatal answer stop a running job.

    ``request_stop`` stops admitting rows and lets in-flight requests drain; ``now=True`` (a second signal)
    cancels them at once. Either way the writer commits what is done, so the output stays valid and resumable.
    """

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self._now: anyio.Event | None = None
        self.reason: str | None = None
        self.kind: StopKind | None = None
        self.fatal: BaseException | None = None

    # the events are made on first use: an anyio.Event belongs to the event loop that is running then
    @property
    def event(self) -> anyio.Event:
        if self._event is None:
            self._event = anyio.Event()
        return self._event

    @property
    def now(self) -> anyio.Event:
        if self._now is None:
            self._now = anyio.Event()
        return self._now

    @property
    def stopping(self) -> bool:
        return self._event is not None and self._event.is_set()

    def request_stop(self, reason: str = "interrupted", *, kind: StopKind = "signal", now: bool = False) -> None:
        if self.reason is None:
            self.reason, self.kind = reason, kind
        self.event.set()
        if now:
            self.now.set()

    def fail(self, error: BaseException) -> None:
        """A fatal answer (``error.fatal``), or a ``JobError`` the run decided on: stop at once; the run raises
        it (an answer as an ``EndpointError``) at the end."""
        if self.fatal is None:
            self.fatal = error
        self.request_stop(
            str(error) if isinstance(error, JobError) else "the endpoint refused the request", kind="fatal", now=True
        )


@dataclass
class RunResult:
    """How a run went. ``ok``/``failed`` count this run's rows; ``already_*`` what earlier runs wrote."""

    output_dir: Location
    ok: int = 0
    failed: int = 0
    already_done: int = 0
    already_failed: int = 0
    retries: int = 0
    generated_tokens: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    #: why the run stopped before the end: "signal" or "budget" (None when it ran to the end)
    stop_kind: StopKind | None = None
    stop_reason: str | None = None
    complete: bool = False
    rows_selected: int | None = None
    #: the final live-stats snapshot (what summary.json holds)
    summary: dict[str, Any] | None = None
    files: list[CommittedFile] = field(default_factory=list)

    @property
    def failed_total(self) -> int:
        """Failed rows in this shard's output, this run's and earlier runs'."""
        return self.failed + self.already_failed


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The error a task group failed with: a job error when there is one (it says what to do)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return next((exc for exc in leaves if isinstance(exc, JobError)), leaves[0])
