"""Status codes, HTTP statuses and TensorFlow error codes all land on the same exception classes."""

import grpc
import pytest

from sd_client import errors


@pytest.mark.parametrize("status_code", [c for c in grpc.StatusCode if c != grpc.StatusCode.OK])
def test_every_grpc_status_code_has_its_class(status_code):
    by_name = errors.from_code(status_code.name, "m")
    by_number = errors.from_code(status_code.value[0], "m")
    assert type(by_name) is type(by_number)
    assert by_name.code == status_code.name
    assert isinstance(by_name, errors.ServingError) and isinstance(by_name, errors.SdClientError)


def test_tensorflow_error_codes_match(monkeypatch):
    tf = pytest.importorskip("tensorflow")
    assert errors.from_code(tf.errors.InvalidArgumentError(None, None, "x").error_code, "x").code == "INVALID_ARGUMENT"
    assert errors.from_code(tf.errors.ResourceExhaustedError(None, None, "x").error_code, "x").code == (
        "RESOURCE_EXHAUSTED"
    )


@pytest.mark.parametrize(
    "status,cls",
    [(400, errors.InvalidArgument), (401, errors.Unauthenticated), (403, errors.PermissionDenied),
     (404, errors.NotFound), (409, errors.Aborted), (429, errors.ResourceExhausted), (499, errors.Cancelled),
     (500, errors.Internal), (501, errors.Unimplemented), (503, errors.Unavailable), (504, errors.DeadlineExceeded),
     (502, errors.Unknown), (418, errors.Unknown)],
)  # fmt: skip
def test_tf_serving_http_statuses(status, cls):
    error = errors.from_http_status(status, "the message", model="decoder")
    assert type(error) is cls and error.model == "decoder"
    assert "the message" in str(error) and str(error).startswith(cls.code)


def test_client_side_errors_are_value_errors_or_import_errors():
    assert issubclass(errors.ValidationError, ValueError) and issubclass(errors.PromptTooLong, errors.ValidationError)
    assert issubclass(errors.MissingTensorFlow, ImportError)
    assert not issubclass(errors.ValidationError, errors.ServingError)
