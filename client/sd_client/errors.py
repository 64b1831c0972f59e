"""Exceptions: one class per TF Serving status code, plus the client's own (raised before anything is sent).

Every transport raises the same classes: REST maps TF Serving's HTTP status (model_servers/http_server.cc), gRPC the
status code, the in-process transport TensorFlow's error code. The server's message is kept as the exception text.
"""


class SdClientError(Exception):
    """Base of every error this package raises on purpose."""


class ServingError(SdClientError):
    """The model server (or the in-process run) answered with a non-OK status."""

    code = "UNKNOWN"  # TF Serving's / gRPC's status code name

    def __init__(self, message, *, model=None):
        super().__init__(message)
        self.message = message
        self.model = model

    def __str__(self):
        where = f" ({self.model})" if self.model else ""
        return f"{self.code}{where}: {self.message}"


class Cancelled(ServingError):
    code = "CANCELLED"


class Unknown(ServingError):
    code = "UNKNOWN"


class InvalidArgument(ServingError):
    code = "INVALID_ARGUMENT"


class DeadlineExceeded(ServingError):
    code = "DEADLINE_EXCEEDED"


class NotFound(ServingError):
    code = "NOT_FOUND"


class AlreadyExists(ServingError):
    code = "ALREADY_EXISTS"


class PermissionDenied(ServingError):
    code = "PERMISSION_DENIED"


class ResourceExhausted(ServingError):
    code = "RESOURCE_EXHAUSTED"


class FailedPrecondition(ServingError):
    code = "FAILED_PRECONDITION"


class Aborted(ServingError):
    code = "ABORTED"


class OutOfRange(ServingError):
    code = "OUT_OF_RANGE"


class Unimplemented(ServingError):
    code = "UNIMPLEMENTED"


class Internal(ServingError):
    code = "INTERNAL"


class Unavailable(ServingError):
    code = "UNAVAILABLE"


class DataLoss(ServingError):
    code = "DATA_LOSS"


class Unauthenticated(ServingError):
    code = "UNAUTHENTICATED"


_BY_CODE = {
    cls.code: cls
    for cls in (
        Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists, PermissionDenied,
        ResourceExhausted, FailedPrecondition, Aborted, OutOfRange, Unimplemented, Internal, Unavailable, DataLoss,
        Unauthenticated,
    )
}

# TF Serving's status -> HTTP mapping read backwards. 400 stands for INVALID_ARGUMENT, FAILED_PRECONDITION and
# OUT_OF_RANGE alike, 409 for ALREADY_EXISTS and ABORTED: REST cannot tell them apart, so the first is used.
_BY_HTTP_STATUS = {
    400: InvalidArgument,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Aborted,
    429: ResourceExhausted,
    499: Cancelled,
    500: Internal,
    501: Unimplemented,
    503: Unavailable,
    504: DeadlineExceeded,
}

# The canonical numbers (tensorflow/core/protobuf/error_codes.proto, grpc.StatusCode, tf.errors.*.error_code).
_CODE_NUMBERS = {
    1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND", 6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}


def from_code(code, message, *, model=None):
    """The exception for a status code given by name ("NOT_FOUND") or number (5)."""
    name = _CODE_NUMBERS.get(code, "UNKNOWN") if isinstance(code, int) else str(code).upper()
    return _BY_CODE.get(name, Unknown)(message, model=model)


def from_http_status(status, message, *, model=None):
    """The exception for an HTTP error status from TF Serving's REST API (a proxy's 502 etc. becomes Unknown)."""
    cls = _BY_HTTP_STATUS.get(status)
    if cls is None:
        return Unknown(f"HTTP {status}: {message}", model=model)
    return cls(message, model=model)


class ValidationError(SdClientError, ValueError):
    """An argument the client refuses before sending anything."""


class PromptTooLong(ValidationError):
    """A prompt over the byte limit, or over 77 tokens when the caller asked for strict prompts."""


class VocabularyError(SdClientError):
    """The CLIP BPE vocabulary could not be found, downloaded or read."""


class MissingTensorFlow(SdClientError, ImportError):
    """The in-process transport was asked for but TensorFlow is not installed."""
