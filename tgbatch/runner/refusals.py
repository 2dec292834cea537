"""A second line of defence behind the start-of-run checks: when the server refuses row after row with the very
same answer (a 4xx with one message, such as a limit ``/info`` does not report), the job's parameters are wrong,
not the rows, so the job stops (exit 2) instead of filling ``errors/`` with every row."""

from __future__ import annotations

from typing import Any

from tgbatch.errors import SpecError

#: identical refusals in a row that stop the job; a single success in between starts the count again
SAME_REFUSALS = 20


class RefusalWatch:
    def __init__(self, limit: int = SAME_REFUSALS) -> None:
        self.limit = limit
        self._last: tuple[Any, ...] | None = None
        self._count = 0

    def see(self, ok: bool, record: dict[str, Any]) -> SpecError | None:
        """The error that stops the job, once ``limit`` rows in a row were refused the same way."""
        status = record.get("http_status")
        if ok or status is None or not 400 <= status < 500:
            self._last, self._count = None, 0
            return None
        signature = (status, record.get("error_type"), record.get("message"))
        self._count = self._count + 1 if signature == self._last else 1
        self._last = signature
        if self._count < self.limit:
            return None
        return SpecError(
            f"the server refused {self._count} rows in a row with the same answer (HTTP {status}: "
            f"{record.get('message')}): the job's parameters or prompts are wrong for this server, not the rows. "
            "Those rows are in errors/; fix the job and run it again (--fresh if the parameters changed)"
        )
