"""The "one run per shard" lock on an object store, where no lock outlives a killed process for free: a lease
object ``.lock-<I>of<N>`` naming its holder and when it expires.

It is made by a conditional create (S3's ``If-None-Match: *``: of two runs starting together exactly one
succeeds), renewed by its holder every third of its time to live, and deleted at the end. A run that finds a
lease refuses to start unless the lease has expired, or its holder ran on this host and its process is gone (a
SIGKILLed run is resumed at once); it then takes the lease over by a write conditional on the expired lease's
ETag (``If-Match``), so of two runs taking over together one wins. Stores without conditional writes (fsspec's
generic ``mode="create"`` checks, then writes) make the lock best-effort there.

A holder that could not renew its lease in time, or whose lease another run took over, must stop writing: every
write through the store checks ``Lease.check`` first and raises ``OutputError`` (the job stops, resumable), so
two runs never write one shard's files, whatever happened to the network meanwhile."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tgbatch.errors import OutputError, ResumeError
from tgbatch.output.progress import pid_alive

if TYPE_CHECKING:
    from tgbatch.output.store import ObjectStore

log = logging.getLogger("tgbatch.job")

TTL_S = 60.0
#: a holder stops writing once this share of the time to live passed since its last renewal (the rest is margin
#: for the clock, the PUT in flight and the next holder's check of the expiry)
SAFE_SHARE = 0.8


class Lease:
    def __init__(self, store: ObjectStore, name: str, what: str, ttl_s: float = TTL_S) -> None:
        self.store = store
        self.name = name
        self.what = what
        self.ttl_s = ttl_s
        self.owner = secrets.token_hex(8)
        self.etag: str | None = None
        #: when the lease was last written (monotonic, taken before the PUT: the conservative side)
        self.renewed_at = time.monotonic()
        #: another run holds the lease now
        self.lost = False
        self._stop = threading.Event()

    def _payload(self) -> bytes:
        record = {
            "owner": self.owner,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "expires_unix": round(time.time() + self.ttl_s, 3),
            "ttl_s": self.ttl_s,
        }
        return (json.dumps(record) + "\n").encode("utf-8")

    def _conditional(self, **s3: Any) -> dict[str, Any]:
        # conditional headers are S3's (s3fs passes them to PutObject); other stores get fsspec's generic form
        return s3 if self.store.scheme == "s3" else {}

    def _put(self, **conditions: Any) -> None:
        started = time.monotonic()
        self.store.write_bytes(self.name, self._payload(), **conditions)
        self.etag = self._etag()
        self.renewed_at = started

    def check(self) -> None:
        """Raise ``OutputError`` when this run may no longer write under the lease."""
        late = time.monotonic() - self.renewed_at > self.ttl_s * SAFE_SHARE
        if self.lost or late:
            why = "another run took it over" if self.lost else f"it was not renewed for {self.ttl_s * SAFE_SHARE:g} s"
            raise OutputError(
                f"lost the lease on {self.what} ({why}): stopped before writing, so that two runs never write one "
                "shard. What was committed is intact; run the same command again to resume"
            )

    def _etag(self) -> str | None:
        try:
            info = self.store.fs.info(self.store.path(self.name))
        except FileNotFoundError:
            return None
        etag = info.get("ETag") or info.get("etag")
        return str(etag) if etag else None

    def acquire(self) -> None:
        try:
            self._put(mode="create")
            return
        except FileExistsError:
            pass
        etag = self._etag()
        try:
            held = json.loads(self.store.read_bytes(self.name))
        except FileNotFoundError:  # released between our create and our read: try once more
            held = {}
        except ValueError:
            held = {}  # a torn or foreign lease: treat it as expired
        if held and not self._takeable(held):
            until = time.strftime("%H:%M:%S", time.localtime(float(held.get("expires_unix") or 0)))
            raise ResumeError(
                f"another tgbatch run (pid {held.get('pid')} on {held.get('hostname')}) is writing {self.what} "
                f"(its lease runs until {until} unless renewed); wait for it or stop it"
            )
        try:
            if etag is None:
                self._put(mode="create")
            else:
                self._put(**self._conditional(IfMatch=etag))
        except OSError as exc:  # FileExistsError, or S3's PreconditionFailed: another run took it first
            raise ResumeError(f"another tgbatch run took over {self.what} just now; wait for it or stop it") from exc
        log.info("took over the expired lease on %s (pid %s on %s)", self.what, held.get("pid"), held.get("hostname"))

    @staticmethod
    def _takeable(held: dict[str, Any]) -> bool:
        if float(held.get("expires_unix") or 0) < time.time():
            return True
        pid = held.get("pid")
        return held.get("hostname") == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self._put(**self._conditional(IfMatch=self.etag) if self.etag else {})
            except OSError as exc:
                log.error("could not renew the lease on %s: %s (another run may take it over)", self.what, exc)
                self.lost = self._taken_over()

    def _taken_over(self) -> bool:
        try:
            held = json.loads(self.store.read_bytes(self.name))
        except (OSError, ValueError):
            return False  # cannot tell: the lease's age decides (``check``)
        return held.get("owner") != self.owner

    def release(self) -> None:
        try:
            held = json.loads(self.store.read_bytes(self.name))
            if held.get("owner") == self.owner:
                self.store.delete(self.name)
        except (OSError, ValueError) as exc:
            log.warning("could not release the lease on %s: %s (it expires by itself)", self.what, exc)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        renewer = threading.Thread(target=self._renew_loop, name="tgbatch-lease", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            self._stop.set()
            renewer.join()
            self.release()
