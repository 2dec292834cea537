"""tgbatch's one exception tree, the same for every backend (TGI's ``/generate`` and OpenAI-style routes).

Every error tgbatch raises is a ``TGBatchError``. Each class carries three flags, and the runner's retry and
dispatch logic reads only the flags, never a message and (almost) never a class:

- ``retryable``: trying the same request again may succeed (the instance may override the class default:
  ``UnknownError`` is retryable for 5xx only);
- ``overload``: the server is saying "too much right now" (429, 503): the server's state, not the row's, so
  the endpoint pauses for every row and the row's attempts are not used up;
- ``fatal``: no request to this endpoint can succeed (a refused token, a wrong URL): the job stops;
- ``unreachable``: no connection could be made (refused, unknown host, TLS): the server is down (a
  ``TransportError`` whose instance sets it).

::

    TGBatchError                         flags: retryable / overload / fatal / unreachable
    ├── ServerError (= TGIError)         status_code, error_type, retry_after, body
    │   ├── ValidationError              422 error_type=validation; also raised client-side before sending
    │   ├── GenerationError              424 error_type=generation                          retryable
    │   ├── OverloadedError              429 error_type=overloaded (TGI's semaphore)        retryable overload
    │   ├── RateLimitError               429 without error_type (a gateway's rate limit)    retryable overload
    │   ├── IncompleteGenerationError    500 incomplete_generation(_stream)                 retryable
    │   │   └── IncompleteStreamError    the SSE stream ended before its final event        retryable
    │   ├── ModelLoadingError            503 with estimated_time ("... is currently loading") retryable overload
    │   ├── ServiceUnavailableError      502/503/504 from a proxy or gateway                 retryable (503: overload)
    │   ├── BadRequestError              400/413/415 and other 4xx (axum rejections)
    │   ├── AuthenticationError          401/403: missing or wrong token                                  fatal
    │   ├── NotFoundError                404: wrong URL or model id                                       fatal
    │   ├── GoneError                    410: a retired endpoint (api-inference.huggingface.co)          fatal
    │   ├── PaymentRequiredError         402 / credits exhausted: the account must be topped up           fatal
    │   ├── ProtocolError                a 2xx answer that is not what the protocol says
    │   ├── TransportError               connection refused/reset/closed                    retryable
    │   │   └── RequestTimeoutError      connect/read/write/pool timeout                     retryable
    │   └── UnknownError                 any other status; retryable when 5xx
    ├── RowError                         one row cannot be done: recorded in errors/, the job goes on
    │   └── TemplateError                the row's prompt or messages cannot be rendered
    └── JobError                         a job cannot start or go on
        ├── SpecError                    the job spec or a CLI override is invalid
        │   └── BadTemplateError         the template itself is wrong (syntax, unknown column); also a
        │                                TemplateError, so code that catches template problems sees both
        ├── DatasetError                 the input dataset cannot be found or read
        ├── ResumeError                  the output folder belongs to another job
        ├── OutputError                  the output cannot be written (disk full, read-only): stop, resumable
        ├── EndpointError                the endpoint refuses every request (401/403/404): stop the job  fatal
        └── ExportError                  an output folder cannot be exported as asked (format, filter, ranking)

``retry_after`` is the server's hint in seconds (``Retry-After`` header or ``estimated_time``), else ``None``.
Foreign exceptions (aiohttp's, httpx's) are translated in exactly one place, ``tgbatch.http``, always chained
with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TGBatchError(Exception):
    """Base class of every error tgbatch raises."""

    #: trying again may succeed
    retryable: ClassVar[bool] = False
    #: the server is overloaded (its state, not the request's): pause the endpoint, spend no attempt
    overload: ClassVar[bool] = False
    #: no request can succeed: stop the job
    fatal: ClassVar[bool] = False
    #: no connection could be made (refused, unknown host, TLS): the server is down, not the request wrong
    unreachable: ClassVar[bool] = False


class ServerError(TGBatchError):
    """An error answer from a text-generation server, or a failure to get one (any backend)."""

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
        overload: bool | None = None,
        unreachable: bool | None = None,
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
        if overload is not None:
            self.overload = overload  # type: ignore[misc]
        if unreachable is not None:
            self.unreachable = unreachable  # type: ignore[misc]

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only constructor arguments survive pickling (errors cross process pools in benchmarks)
        return (_rebuild, (type(self), self.message, self.__dict__))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r})"


def _rebuild(cls: type[ServerError], message: str, state: dict[str, Any]) -> ServerError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


#: the name this class had when tgbatch spoke only TGI (kept: it is public API)
TGIError = ServerError


class ValidationError(ServerError):
    """The request's parameters or inputs are invalid (TGI 422 ``validation``), raised before sending when the
    client can tell on its own. ``str(err)`` is TGI's exact message, ``Input validation error: ...``."""

    error_types = ("validation",)

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("status_code", 422)
        kwargs.setdefault("error_type", "validation")
        super().__init__(message, **kwargs)


class GenerationError(ServerError):
    """The model server failed while generating (TGI 424 ``generation``)."""

    retryable = True
    error_types = ("generation",)


class OverloadedError(ServerError):
    """TGI's concurrency limit is full (429 ``overloaded``, ``Model is overloaded``)."""

    retryable = True
    overload = True
    error_types = ("overloaded",)


class RateLimitError(ServerError):
    """A gateway rate limit (429 with no ``error_type``, as the HF Inference API sends)."""

    retryable = True
    overload = True


class IncompleteGenerationError(ServerError):
    """The backend stopped before finishing (500 ``incomplete_generation`` / ``incomplete_generation_stream``)."""

    retryable = True
    error_types = ("incomplete_generation", "incomplete_generation_stream")


class IncompleteStreamError(IncompleteGenerationError):
    """The SSE stream closed before the event carrying ``generated_text``."""


class ModelLoadingError(ServerError):
    """503 ``Model ... is currently loading`` with ``estimated_time`` (seconds, in ``retry_after``)."""

    retryable = True
    overload = True


class ServiceUnavailableError(ServerError):
    """502, 503 or 504 from a gateway, proxy or an unhealthy server. A 503 is overload (a queue cap, a
    scaling gateway): the server is up and says "not now"; 502/504 are a broken hop."""

    retryable = True
    error_types = ("healthcheck",)

    def __init__(self, message: str, **kwargs: Any) -> None:
        if "overload" not in kwargs:
            kwargs["overload"] = kwargs.get("status_code") == 503
        super().__init__(message, **kwargs)


class BadRequestError(ServerError):
    """The server refused the request as malformed (400, 413, 415, other 4xx; often axum's text/plain)."""


class AuthenticationError(ServerError):
    """401 or 403: the token is missing, wrong, or lacks permission. Not any row's fault."""

    fatal = True


class NotFoundError(ServerError):
    """404: the URL or model id does not exist."""

    fatal = True


class GoneError(ServerError):
    """410 Gone: the endpoint was retired (the serverless ``api-inference.huggingface.co``). The message names
    the URL that replaced it."""

    fatal = True


class PaymentRequiredError(ServerError):
    """402, or an answer saying the account's credits or quota are used up (OpenAI's ``insufficient_quota``):
    no request can succeed until the account is topped up, so the job stops."""

    fatal = True


class ProtocolError(ServerError):
    """The server answered 2xx with something the protocol does not allow (not JSON, wrong shape)."""


class TransportError(ServerError):
    """No HTTP answer: connection refused, reset or closed mid-response."""

    retryable = True


class RequestTimeoutError(TransportError):
    """A connect, read, write or pool timeout."""


class UnknownError(ServerError):
    """Any other status. Retryable when it is a 5xx."""


class RowError(TGBatchError):
    """One row cannot be done, whatever the server says: it is recorded in ``errors/`` and the job goes on."""


class TemplateError(RowError):
    """A row's prompt (or messages) cannot be rendered from its values."""


class JobError(TGBatchError):
    """A batch job cannot start or go on."""


class SpecError(JobError):
    """The job spec, or an override of it, is invalid. The message names the field, the value and the fix."""


class BadTemplateError(SpecError, TemplateError):
    """The template itself is wrong: it does not compile, or names a column the dataset lacks. A spec error
    (nothing is sent); also a ``TemplateError``."""


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

    fatal = True


class ExportError(JobError):
    """``tgbatch export`` cannot do what was asked: the format does not fit the job, a filter names a column
    that does not exist, a ranking has nothing to rank by. The message names the value and the fix."""


__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BadTemplateError",
    "DatasetError",
    "EndpointError",
    "ExportError",
    "GenerationError",
    "GoneError",
    "IncompleteGenerationError",
    "IncompleteStreamError",
    "JobError",
    "ModelLoadingError",
    "NotFoundError",
    "OutputError",
    "OverloadedError",
    "PaymentRequiredError",
    "ProtocolError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResumeError",
    "RowError",
    "ServerError",
    "ServiceUnavailableError",
    "SpecError",
    "TGBatchError",
    "TGIError",
    "TemplateError",
    "TransportError",
    "UnknownError",
    "ValidationError",
]
