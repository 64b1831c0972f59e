"""The gRPC API through tensorflow-serving-api's own PredictionServiceStub and ModelServiceStub."""

import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from server_requests import ALL_SIGNATURES, GrpcClients, assert_outputs_match, busy_fraction, outputs_from_response, predict_request

LATEST = {"text_encoder": 2, "diffusion_model": 2, "decoder": 2, "strings": 1}


@pytest.fixture(scope="module")
def clients(server):
    clients = GrpcClients(server.grpc_target)
    yield clients
    clients.close()


@pytest.mark.parametrize("model,signature", ALL_SIGNATURES)
def test_predict_matches_the_in_process_run(clients, reference, examples, model, signature):
    inputs = examples[(model, signature)]
    expected = reference[(model, LATEST[model])].run(signature, inputs)
    response = clients.predict(model, signature, inputs)
    assert response.model_spec.name == model
    assert response.model_spec.version.value == LATEST[model]
    assert response.model_spec.signature_name == signature
    assert_outputs_match(outputs_from_response(response), expected)


def test_responses_use_typed_fields_like_tf_serving(clients, examples):
    """tensorflow_model_server fills float_val/int_val/string_val, not tensor_content (its default)."""
    response = clients.predict("decoder", "serving_default", examples[("decoder", "serving_default")])
    images = response.outputs["images"]
    assert images.dtype == tf.uint8.as_datatype_enum and not images.tensor_content
    assert len(images.int_val) == 2 * 128 * 128 * 3
    assert [dim.size for dim in images.tensor_shape.dim] == [2, 128, 128, 3]
    text = clients.predict("strings", None, {"text": np.array([b"a", b"bc"], object)})
    assert list(text.outputs["echo_bytes"].string_val) == [b"a", b"bc"]
    assert list(text.outputs["length"].int_val) == [1, 2]


def test_typed_field_requests_are_accepted(clients, reference, examples):
    """Inputs in typed fields (as non-TensorFlow clients send them) decode like tensor_content."""
    inputs = examples[("text_encoder", "serving_default")]
    request = predict_request("text_encoder", "serving_default", {})
    for name, array in inputs.items():
        proto = request.inputs[name]
        proto.dtype = tf.int32.as_datatype_enum
        proto.tensor_shape.dim.add(size=array.shape[0])
        proto.tensor_shape.dim.add(size=array.shape[1])
        proto.int_val.extend(array.ravel().tolist())
    response = clients.prediction.Predict(request, timeout=60)
    assert_outputs_match(outputs_from_response(response), reference[("text_encoder", 2)].run("serving_default", inputs))


@pytest.mark.parametrize("selector,version", [({"version": 1}, 1), ({"label": "stock"}, 1), ({"label": "tuned"}, 2)])
def test_versions_and_labels(clients, reference, examples, selector, version):
    inputs = examples[("decoder", "serving_default")]
    response = clients.predict("decoder", "serving_default", inputs, **selector)
    assert response.model_spec.version.value == version
    assert_outputs_match(
        outputs_from_response(response), reference[("decoder", version)].run("serving_default", inputs)
    )


def test_output_filter_returns_only_the_named_outputs(clients, examples):
    request = predict_request("text_encoder", None, examples[("text_encoder", "serving_default")])
    request.output_filter.append("context")
    response = clients.prediction.Predict(request, timeout=60)
    assert list(response.outputs) == ["context"]


def test_get_model_metadata(clients, reference):
    response = clients.metadata("decoder", label="stock")
    assert response.model_spec.name == "decoder" and response.model_spec.version.value == 1
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    expected = reference[("decoder", 1)].meta_graph.signature_def
    for name in ("serving_default", "png"):
        assert signature_map.signature_def[name] == expected[name]


def test_get_model_status(clients):
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    every = clients.status("text_encoder")
    assert [(s.version, s.state) for s in every.model_version_status] == [(1, available), (2, available)]
    assert [s.version for s in clients.status("text_encoder", version=1).model_version_status] == [1]
    assert [s.version for s in clients.status("text_encoder", label="tuned").model_version_status] == [2]


def test_messages_above_4_mb_pass_both_ways(clients):
    big = bytes(5 * 1024 * 1024)
    response = clients.predict("strings", None, {"text": np.array([big], object)})
    assert response.outputs["echo_bytes"].string_val[0] == big
    assert list(response.outputs["length"].int_val) == [len(big)]


def test_client_deadline_becomes_the_run_timeout(server, clients):
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        clients.predict("slow", None, {"iterations": np.int32(2**31 - 1)}, timeout=1.0)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 10
    time.sleep(0.5)
    assert busy_fraction(server.process.pid) < 0.2, "the session run went on after the client's deadline"
    response = clients.predict("slow", None, {"iterations": np.int32(10)}, timeout=30)
    assert response.outputs["value"].float_val
