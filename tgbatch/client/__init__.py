"""A client for text-generation-inference (TGI) servers, Inference Endpoints and the HF Inference API.

Sync (``Client``) and async (``AsyncClient``), ``generate`` and ``generate_stream``, typed responses, every
request parameter, client-side validation with TGI's own rules and messages, and TGI's errors as typed
exceptions (``tgbatch.errors``). OpenAI-style routes too (TGI's Messages API, vLLM, SGLang, the HF router):
``chat``, ``chat_stream``, ``completions``, ``completions_stream`` and ``models`` on both clients.
"""

from tgbatch.backends.openai.models import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    Completion,
    CompletionChunk,
    ModelCard,
    ModelList,
    ToolCall,
    Usage,
)
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
    GoneError,
    IncompleteGenerationError,
    IncompleteStreamError,
    ModelLoadingError,
    NotFoundError,
    OverloadedError,
    PaymentRequiredError,
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
    "ChatChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "Client",
    "Completion",
    "CompletionChunk",
    "Details",
    "FinishReason",
    "GenerateOptions",
    "GenerationError",
    "GoneError",
    "Grammar",
    "IncompleteGenerationError",
    "IncompleteStreamError",
    "InferenceAPIAsyncClient",
    "InferenceAPIClient",
    "Info",
    "InputToken",
    "Limits",
    "ModelCard",
    "ModelList",
    "ModelLoadingError",
    "NotFoundError",
    "OverloadedError",
    "Parameters",
    "PaymentRequiredError",
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
    "ToolCall",
    "TransportError",
    "UnknownError",
    "Usage",
    "ValidationError",
]
