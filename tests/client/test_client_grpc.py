"""gRPC transport against a fake server built on the official tensorflow-serving-api servicers.

The server sees the client's requests as the official message classes (so paths, field numbers and tensor encoding
are checked by code nobody here wrote), and answers the way TF Serving does (typed fields, not tensor_content).
"""

import concurrent.futures
import time

import numpy as np
import pytest
from client_fakes import free_port

grpc = pytest.importorskip("grpc")
tf = pytest.importorskip("tensorflow")
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from sd_client import errors  # noqa: E402
from sd_client.transports import open_transport  # noqa: E402
from sd_client.transports.grpc_api import MESSAGE_LIMIT, GrpcTransport, retry_service_config  # noqa: E402


class FakeServing(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):
    """Scripted answers: each entry of `script` is a callable(request, context) -> response, used in turn (the last
    one repeats). Every request is recorded as the official message it was parsed into."""

    def __init__(self):
        self.requests = []
        self.script = [self.echo]

    def _next(self, request, context):
        self.requests.append(request)
        step = self.script[min(len(self.requests), len(self.script)) - 1]
        return step(request, context)

    Predict = GetModelMetadata = GetModelStatus = _next

    @staticmethod
    def echo(request, context):
        """Every input back as a typed-field output (TF Serving's default answer form)."""
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for name, tensor in request.inputs.items():
            array = tf.make_ndarray(tensor)
            out = response.outputs[name]
            out.dtype = tensor.dtype
            out.tensor_shape.CopyFrom(tensor.tensor_shape)
            if array.dtype == np.float32:
                out.float_val.extend(array.reshape(-1).tolist())
            elif array.dtype == object:
                out.string_val.extend(array.reshape(-1).tolist())
            else:
                out.int_val.extend(array.reshape(-1).tolist())
        return response


def abort(code, message):
    def step(request, context):
        context.abort(code, message)

    return step


@pytest.fixture
def fake_grpc():
    servicer = FakeServing()
    options = [("grpc.max_send_message_length", MESSAGE_LIMIT), ("grpc.max_receive_message_length", MESSAGE_LIMIT)]
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.target = f"127.0.0.1:{port}"
    yield servicer
    server.stop(grace=None)


def _transport(servicer, **kwargs):
    kwargs.setdefault("timeout", 10)
    kwargs.setdefault("retries", 2)
    return GrpcTransport(servicer.target, **kwargs)


def test_predict_reaches_the_official_service_and_reads_typed_answers(fake_grpc):
    context = np.random.default_rng(0).standard_normal((2, 77, 768)).astype(np.float32)
    inputs = {
        "context": context,
        "num_steps": np.int32(20),
        "guidance_scale": np.float32(7.5),
        "seed": np.array([5, 6], np.int32),
    }
    outputs = _transport(fake_grpc).predict("diffusion_model", "serving_default", inputs, label="pokemon")
    (request,) = fake_grpc.requests
    assert isinstance(request, predict_pb2.PredictRequest)
    assert request.model_spec.name == "diffusion_model" and request.model_spec.version_label == "pokemon"
    assert request.model_spec.signature_name == "serving_default"
    assert request.inputs["context"].tensor_content  # floats travel as raw bytes
    for name, value in inputs.items():
        np.testing.assert_array_equal(tf.make_ndarray(request.inputs[name]), value)
        np.testing.assert_array_equal(outputs[name], value)
        assert outputs[name].dtype == np.asarray(value).dtype


def test_messages_past_grpc_4mb_default_pass_both_ways(fake_grpc):
    big = np.ones((8, 77, 768), np.float32)  # 1.9 MB as bytes, 9 MB+ as the echo's float_val... and back
    inputs = {"context": big, "unconditional_context": big, "more": np.ones((8, 77, 768), np.float32)}
    outputs = _transport(fake_grpc).predict("diffusion_model", "serving_default", inputs)
    assert outputs["context"].shape == big.shape
    # the same call on a channel with gRPC's default limits fails: the limits above are what made it pass
    with grpc.insecure_channel(fake_grpc.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    "code,cls",
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.INTERNAL, errors.Internal),
    ],
)
def test_status_codes_become_typed_exceptions_and_are_not_retried(fake_grpc, code, cls):
    fake_grpc.script = [abort(code, "the server's words"), FakeServing.echo]
    with pytest.raises(cls) as caught:
        _transport(fake_grpc, retries=3).predict("decoder", "png", {"latent": np.zeros((1, 2, 2, 4), np.float32)})
    assert caught.value.message == "the server's words" and caught.value.model == "decoder"
    assert len(fake_grpc.requests) == 1


def test_unavailable_is_retried_then_succeeds(fake_grpc):
    unavailable = abort(grpc.StatusCode.UNAVAILABLE, "loading")
    fake_grpc.script = [unavailable, unavailable, FakeServing.echo]
    outputs = _transport(fake_grpc, retries=3).predict("decoder", "png", {"latent": np.ones((1, 1, 1, 4), np.float32)})
    assert len(fake_grpc.requests) == 3 and outputs["latent"].shape == (1, 1, 1, 4)


def test_unavailable_for_good_raises_after_the_retries(fake_grpc):
    fake_grpc.script = [abort(grpc.StatusCode.UNAVAILABLE, "loading")]
    with pytest.raises(errors.Unavailable, match="loading"):
        _transport(fake_grpc, retries=2).model_status("decoder")
    assert len(fake_grpc.requests) == 3


def test_retry_policy_is_capped_at_grpc_limit():
    assert retry_service_config(0) == {}
    assert retry_service_config(10)["methodConfig"][0]["retryPolicy"]["maxAttempts"] == 5


def test_deadline(fake_grpc):
    fake_grpc.script = [lambda request, context: time.sleep(1.5) or FakeServing.echo(request, context)]
    start = time.monotonic()
    with pytest.raises(errors.DeadlineExceeded, match="within 0.3 s"):
        _transport(fake_grpc, timeout=0.3).predict("decoder", "png", {"latent": np.zeros((1, 1, 1, 4), np.float32)})
    assert time.monotonic() - start < 1.4


def test_server_down_is_unavailable():
    transport = GrpcTransport(f"127.0.0.1:{free_port()}", timeout=10, retries=1)
    with pytest.raises(errors.Unavailable, match="127.0.0.1"):
        transport.model_status("decoder")


def test_model_status(fake_grpc):
    def answer(request, context):
        response = get_model_status_pb2.GetModelStatusResponse()
        response.model_version_status.add(version=1, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
        response.model_version_status.add(version=2, state=get_model_status_pb2.ModelVersionStatus.LOADING)
        return response

    fake_grpc.script = [answer]
    statuses = _transport(fake_grpc).model_status("diffusion_model", version=2)
    (request,) = fake_grpc.requests
    assert isinstance(request, get_model_status_pb2.GetModelStatusRequest)
    assert request.model_spec.name == "diffusion_model" and request.model_spec.version.value == 2
    assert [(s.version, s.state, s.available) for s in statuses] == [(1, "AVAILABLE", True), (2, "LOADING", False)]


def test_signatures_from_metadata(fake_grpc):
    def answer(request, context):
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        signature = signature_map.signature_def["png"]
        signature.inputs["latent"].dtype = 1
        for size in (-1, 16, 16, 4):
            signature.inputs["latent"].tensor_shape.dim.add(size=size)
        signature.outputs["images_bytes"].dtype = 7
        signature.outputs["images_bytes"].tensor_shape.dim.add(size=-1)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.metadata["signature_def"].Pack(signature_map)
        return response

    fake_grpc.script = [answer]
    signatures = _transport(fake_grpc).signatures("decoder")
    (request,) = fake_grpc.requests
    assert isinstance(request, get_model_metadata_pb2.GetModelMetadataRequest)
    assert list(request.metadata_field) == ["signature_def"]
    assert signatures["png"]["inputs"] == {"latent": ("float32", (None, 16, 16, 4))}
    assert signatures["png"]["outputs"] == {"images_bytes": ("string", (None,))}


def test_url_schemes_pick_the_transport():
    assert isinstance(open_transport("grpc://localhost:1234"), GrpcTransport)
    assert open_transport("grpc://localhost").target == "localhost:8500"
    assert open_transport("grpc://[::1]:9").target == "[::1]:9"
    secure = open_transport("grpcs://example.invalid:443")
    assert isinstance(secure, GrpcTransport) and secure.target == "example.invalid:443"
    from sd_client.transports.rest import RestTransport

    assert isinstance(open_transport("https://example.invalid/prefix"), RestTransport)
    with pytest.raises(errors.ValidationError, match="unsupported URL scheme 'ftp'"):
        open_transport("ftp://x")
    with pytest.raises(errors.ValidationError, match="no path"):
        open_transport("grpc://host:1/v1")
