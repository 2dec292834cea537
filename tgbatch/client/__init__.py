"""A client for text-generation-inference (TGI) servers, Inference Endpoints and the HF Inference API.

Sync (``Client``) and async (``AsyncClient``), ``generate`` and ``generate_stream``, typed responses, every
request parameter, client-side validation with TGI's own rules and messages, and TGI's errors as typed
exceptions (``tgbatch.errors``).
"""

from tgbatch.backends.tgi.client import AsyncClient, Client, InferenceAPIAsyncClient, InferenceAPIClient
from tgbatch.backends.tgi.models import (
    BestOfSequence,
    Details,
    FinishReason,
    Grammar,
    Info,
    InputToken,
    PrefillToken,
    Response,
    StreamDetails,
    StreamResponse,
    Token,
)
from tgbatch.backends.tgi.rules import Limits, Parameters
from tgbatch.backends.tgi.wire import GenerateOptions
from tgbatch.errors import (
    AuthenticationError,
    BadRequestError,
    GenerationError,
    IncompleteGenerationError,
    IncompleteStreamError,
    ModelLoadingError,
    NotFoundError,
    OverloadedError,
    ProtocolError,
    RateLimitError,
    RequestTimeoutError,
    ServiceUnavailableError,
    TGIError,
    TransportError,
    UnknownError,
    ValidationError,
)
from tgbatch.http import DEFAULT_LIMITS, DEFAULT_TIMEOUT

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BestOfSequence",
    "Client",
    "Details",
    "FinishReason",
    "GenerateOptions",
    "GenerationError",
    "Grammar",
    "IncompleteGenerationError",
    "IncompleteStreamError",
    "InferenceAPIAsyncClient",
    "InferenceAPIClient",
    "Info",
    "InputToken",
    "Limits",
    "ModelLoadingError",
    "NotFoundError",
    "OverloadedError",
    "Parameters",
    "PrefillToken",
    "ProtocolError",
    "RateLimitError",
    "RequestTimeoutError",
    "Response",
    "ServiceUnavailableError",
    "StreamDetails",
    "StreamResponse",
    "TGIError",
    "Token",
    "TransportError",
    "UnknownError",
    "ValidationError",
]
