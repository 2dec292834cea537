"""tgbatch's one exception tree.

Every error tgbatch raises is a ``TGBatchError``. Errors that come from talking to a text-generation server are
``TGIError`` subclasses, classified by *type* (never by message text) so that callers, and the runner's retry
policy, can decide by ``isinstance`` and by ``retryable``::

    TGBatchError
    ├── TGIError                         status_code, error_type, retryable, retry_after
    │   ├── ValidationError              422 error_type=validation; also raised client-side before sending
    │   ├── GenerationError              424 error_type=generation                          retryable
    │   ├── OverloadedError              429 error_type=overloaded (TGI's semaphore)        retryable
    │   ├── RateLimitError               429 without error_type (HF API rate limit)         retryable
    │   ├── IncompleteGenerationError    500 incomplete_generation(_stream)                 retryable
    │   │   └── IncompleteStreamError    the SSE stream ended before its final event        retryable
    │   ├── ModelLoadingError            503 with estimated_time ("... is currently loading") retryable
    │   ├── ServiceUnavailableError      502/503/504 from a proxy or gateway                 retryable
    │   ├── BadRequestError              400/413/415 and other 4xx (axum rejections)
    │   ├── AuthenticationError          401/403: missing or wrong token
    │   ├── NotFoundError                404: wrong URL or model id
    │   ├── ProtocolError                a 2xx answer that is not what the protocol says
    │   ├── TransportError               connection refused/reset/closed                    retryable
    │   │   └── RequestTimeoutError      connect/read/write/pool timeout                     retryable
    │   └── UnknownError                 any other status; retryable when 5xx
    └── JobError                         a job cannot start or continue (runner; see tgbatch.pipeline)
        ├── SpecError                    the job spec or a CLI override is invalid
        │   └── TemplateError            the prompt template does not compile or render (at run time a row
        │                                that fails to render is recorded in errors/ instead)
        ├── DatasetError                 the input dataset cannot be found or read
        ├── ResumeError                  the output folder belongs to another job
        ├── OutputError                  the output cannot be written (disk full, read-only): stop, resumable
        └── EndpointError                the endpoint refuses every request (401/403/404): stop the job

``retryable`` is a class default that an instance may override (``UnknownError`` is retryable for 5xx only).
``retry_after`` is the server's hint in seconds (``Retry-After`` header or ``estimated_time``), else ``None``.
Foreign exceptions (httpx's) are translated in exactly one place, ``tgbatch.client._http``, always chained
with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TGBatchError(Exception):
    """Base class of every error tgbatch raises."""


class TGIError(TGBatchError):
    """An error answer from a text-generation server, or a failure to get one."""

    retryable: ClassVar[bool] = False
    #: the TGI ``error_type`` values this class stands for (used by the status mapping)
    error_types: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
        body: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_type = error_type
        self.retry_after = retry_after
        self.body = body
        if retryable is not None:
            # instance attribute shadows the class default for this one error
            self.retryable = retryable  # type: ignore[misc]

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only constructor arguments survive pickling (errors cross process pools in benchmarks)
        return (_rebuild, (type(self), self.message, self.__dict__))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r})"


def _rebuild(cls: type[TGIError], message: str, state: dict[str, Any]) -> TGIError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class ValidationError(TGIError):
    """The request's parameters or inputs are invalid (TGI 422 ``validation``), raised before sending when the
    client can tell on its own. ``str(err)`` is TGI's exact message, ``Input validation error: ...``."""

    error_types = ("validation",)

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("status_code", 422)
        kwargs.setdefault("error_type", "validation")
        super().__init__(message, **kwargs)


class GenerationError(TGIError):
    """The model server failed while generating (TGI 424 ``generation``)."""

    retryable = True
    error_types = ("generation",)


class OverloadedError(TGIError):
    """TGI's concurrency limit is full (429 ``overloaded``, ``Model is overloaded``)."""

    retryable = True
    error_types = ("overloaded",)


class RateLimitError(TGIError):
    """A gateway rate limit (429 with no ``error_type``, as the HF Inference API sends)."""

    retryable = True


class IncompleteGenerationError(TGIError):
    """The backend stopped before finishing (500 ``incomplete_generation`` / ``incomplete_generation_stream``)."""

    retryable = True
    error_types = ("incomplete_generation", "incomplete_generation_stream")


class IncompleteStreamError(IncompleteGenerationError):
    """The SSE stream closed before the event carrying ``generated_text``."""


class ModelLoadingError(TGIError):
    """503 ``Model ... is currently loading`` with ``estimated_time`` (seconds, in ``retry_after``)."""

    retryable = True


class ServiceUnavailableError(TGIError):
    """502, 503 or 504 from a gateway, proxy or an unhealthy server."""

    retryable = True
    error_types = ("healthcheck",)


class BadRequestError(TGIError):
    """The server refused the request as malformed (400, 413, 415, other 4xx; often axum's text/plain)."""


class AuthenticationError(TGIError):
    """401 or 403: the token is missing, wrong, or lacks permission. Not any row's fault."""


class NotFoundError(TGIError):
    """404: the URL or model id does not exist."""


class ProtocolError(TGIError):
    """The server answered 2xx with something the protocol does not allow (not JSON, wrong shape)."""


class TransportError(TGIError):
    """No HTTP answer: connection refused, reset or closed mid-response."""

    retryable = True


class RequestTimeoutError(TransportError):
    """A connect, read, write or pool timeout."""


class UnknownError(TGIError):
    """Any other status. Retryable when it is a 5xx."""


class JobError(TGBatchError):
    """A batch job cannot start or go on."""


class SpecError(JobError):
    """The job spec, or an override of it, is invalid. The message names the field, the value and the fix."""


class TemplateError(SpecError):
    """The prompt template does not compile, names a column the dataset lacks, or fails to render a row."""


class DatasetError(JobError):
    """The input dataset cannot be found, opened or read (missing file, unknown split, unreadable data)."""


class ResumeError(JobError):
    """The output folder holds another job's results (different fingerprint) or is unreadable."""


class OutputError(JobError):
    """A shard or the manifest could not be written. What was committed before is intact; the job stops and
    resumes once the cause (space, permissions) is fixed."""


class EndpointError(JobError):
    """The endpoint refuses every request (401/403: token missing or wrong; 404: wrong URL): no row's fault,
    so the job stops at once instead of failing every row."""


__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "DatasetError",
    "EndpointError",
    "GenerationError",
    "IncompleteGenerationError",
    "IncompleteStreamError",
    "JobError",
    "ModelLoadingError",
    "NotFoundError",
    "OutputError",
    "OverloadedError",
    "ProtocolError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResumeError",
    "ServiceUnavailableError",
    "SpecError",
    "TGBatchError",
    "TGIError",
    "TemplateError",
    "TransportError",
    "UnknownError",
    "ValidationError",
]
