"""Errors carry a canonical status code (TF Serving's absl/gRPC codes); REST maps them to HTTP as TF Serving does."""

import grpc

# model_servers/http_server.cc ToHTTPStatusCode; every code not listed is 500.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

_PYTHON_SESSION_PREFIX = "Graph execution error:"
_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A request that cannot be served; `code` is a grpc.StatusCode, the message says what was wrong."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self):
        return HTTP_STATUS.get(self.code, 500)


def invalid_argument(message):
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message):
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def from_tf_error(error):
    """A TensorFlow runtime error (tf.errors.OpError) keeps its canonical code: InvalidArgumentError -> 400 etc."""
    code = _CODE_BY_NUMBER.get(error.error_code, grpc.StatusCode.UNKNOWN)
    # The Python session prefixes every message; TF Serving's C++ session does not.
    return ServingError(code, error.message.removeprefix(_PYTHON_SESSION_PREFIX).strip())
