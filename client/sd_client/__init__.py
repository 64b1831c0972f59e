"""Thin client for the Stable Diffusion v1.4 models served by TF Serving: REST, gRPC or in-process.

    from sd_client import Client
    with Client("http://127.0.0.1:8501") as client:
        for result in client.generate("a red fox in the snow", num_images=2, seed=42):
            result.save(f"fox-{result.seed}.png")

Importing this package loads neither TensorFlow nor Keras (nor grpc until a grpc:// URL is used).
"""

from .client import Client
from .inputs import resolve_seeds
from .results import GenerationResult
from .errors import (
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    MissingTensorFlow,
    NotFound,
    PromptTooLong,
    ResourceExhausted,
    SdClientError,
    ServingError,
    Unavailable,
    Unimplemented,
    ValidationError,
    VocabularyError,
)
from .tokenizer import ClipTokenizer, PromptTruncatedWarning

__all__ = [
    "ClipTokenizer",
    "Client",
    "DeadlineExceeded",
    "FailedPrecondition",
    "GenerationResult",
    "Internal",
    "InvalidArgument",
    "MissingTensorFlow",
    "NotFound",
    "PromptTooLong",
    "PromptTruncatedWarning",
    "ResourceExhausted",
    "SdClientError",
    "ServingError",
    "Unavailable",
    "Unimplemented",
    "ValidationError",
    "VocabularyError",
    "resolve_seeds",
]
