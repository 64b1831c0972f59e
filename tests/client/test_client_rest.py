"""REST transport against a fake TF Serving REST port: request form, answer decoding, errors, retries, deadlines."""

import base64
import time

import numpy as np
import pytest
from client_fakes import free_port, solid_png

from sd_client import errors
from sd_client.transports.rest import RestTransport, model_path


def _transport(server, **kwargs):
    kwargs.setdefault("retries", 2)
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("timeout", 10)
    return RestTransport(server.url, **kwargs)


@pytest.mark.parametrize(
    "version,label,path",
    [
        (None, None, "/v1/models/decoder"),
        (3, None, "/v1/models/decoder/versions/3"),
        (None, "stock_2", "/v1/models/decoder/labels/stock_2"),
    ],
)
def test_model_paths(version, label, path):
    assert model_path("decoder", version, label) == path


def test_predict_sends_the_columnar_form_with_the_signature_name(fake_rest):
    png = solid_png(9)
    fake_rest.answers = [(200, {"outputs": [{"b64": base64.b64encode(png).decode()}]}, 0)]
    latent = np.arange(2 * 2 * 2 * 4, dtype=np.float32).reshape(2, 2, 2, 4) / 7
    outputs = _transport(fake_rest).predict("decoder", "png", {"latent": latent}, label="stock")
    method, path, body = fake_rest.requests[0]
    assert (method, path) == ("POST", "/v1/models/decoder/labels/stock:predict")
    assert set(body) == {"signature_name", "inputs"} and body["signature_name"] == "png"
    np.testing.assert_array_equal(np.asarray(body["inputs"]["latent"], np.float32), latent)
    assert outputs["images_bytes"].dtype == object and outputs["images_bytes"].tolist() == [png]


def test_scalars_and_strings_in_json(fake_rest):
    fake_rest.answers = [(200, {"outputs": []}, 0)]
    _transport(fake_rest).predict(
        "text_to_image",
        "serving_default",
        {
            "prompt": np.array([b"caf\xc3\xa9", "東京"], dtype=object),
            "num_steps": np.int32(30),
            "guidance_scale": np.float32(7.5),
            "seed": np.array([1, 2], np.int32),
        },
        version=2,
    )
    _, path, body = fake_rest.requests[0]
    assert path == "/v1/models/text_to_image/versions/2:predict"
    inputs = body["inputs"]
    assert inputs["num_steps"] == 30 and inputs["guidance_scale"] == 7.5 and inputs["seed"] == [1, 2]
    assert inputs["prompt"] == [{"b64": base64.b64encode("café".encode()).decode()}, "東京"]


def test_named_outputs_are_decoded_with_contract_dtypes_and_float32_survives_json(fake_rest):
    rng = np.random.default_rng(1)
    context = rng.standard_normal((1, 77, 768)).astype(np.float32)
    # TF Serving writes float32 in shortest round-trip form; Python's repr of the float32 value is one such form
    as_json = [[[float(repr(float(v))) for v in row] for row in context[0]]]
    fake_rest.answers = [(200, {"outputs": {"context": as_json, "unconditional_context": as_json}}, 0)]
    tokens = np.zeros((1, 77), np.int32)
    outputs = _transport(fake_rest).predict(
        "text_encoder", "serving_default", {"tokens": tokens, "negative_tokens": tokens}
    )
    assert outputs["context"].dtype == np.float32 and outputs["context"].shape == (1, 77, 768)
    np.testing.assert_array_equal(outputs["context"], context)


def test_uint8_images(fake_rest):
    fake_rest.answers = [(200, {"outputs": [[[[0, 128, 255]]]]}, 0)]
    outputs = _transport(fake_rest).predict("decoder", "serving_default", {"latent": np.zeros((1, 1, 1, 4))})
    assert outputs["images"].dtype == np.uint8 and outputs["images"].tolist() == [[[[0, 128, 255]]]]


@pytest.mark.parametrize(
    "status,cls",
    [
        (400, errors.InvalidArgument),
        (404, errors.NotFound),
        (429, errors.ResourceExhausted),
        (500, errors.Internal),
        (501, errors.Unimplemented),
        (503, errors.Unavailable),
        (504, errors.DeadlineExceeded),
    ],
)
def test_error_bodies_become_typed_exceptions_with_the_server_message(fake_rest, status, cls):
    fake_rest.answers = [(status, {"error": f"message for {status}"}, 0)]
    with pytest.raises(cls) as caught:
        _transport(fake_rest, retries=0).predict("decoder", "png", {"latent": np.zeros((1, 1, 1, 4))})
    assert caught.value.message == f"message for {status}"
    assert caught.value.model == "decoder"
    assert f"message for {status}" in str(caught.value)


def test_a_proxy_error_page_is_unknown_with_its_text(fake_rest):
    fake_rest.answers = [(502, b"<html>Bad Gateway</html>", 0)]
    with pytest.raises(errors.Unknown, match="HTTP 502.*Bad Gateway"):
        _transport(fake_rest, retries=0).model_status("decoder")


def test_503_is_retried_then_succeeds(fake_rest):
    ok = {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK"}}]}
    fake_rest.answers = [(503, {"error": "loading"}, 0), (503, {"error": "loading"}, 0), (200, ok, 0)]
    statuses = _transport(fake_rest, retries=2).model_status("decoder")
    assert len(fake_rest.requests) == 3
    assert [(s.version, s.state, s.available) for s in statuses] == [(1, "AVAILABLE", True)]


def test_predict_is_retried_on_503_too(fake_rest):
    fake_rest.answers = [(503, {"error": "loading"}, 0), (200, {"outputs": []}, 0)]
    _transport(fake_rest, retries=2).predict("decoder", "png", {"latent": np.zeros((1, 1, 1, 4))})
    assert [r[0] for r in fake_rest.requests] == ["POST", "POST"]


def test_503_for_good_gives_unavailable_after_the_retries(fake_rest):
    fake_rest.answers = [(503, {"error": "Servable not available"}, 0)]
    with pytest.raises(errors.Unavailable, match="Servable not available"):
        _transport(fake_rest, retries=2).model_status("decoder")
    assert len(fake_rest.requests) == 3


@pytest.mark.parametrize("status", [400, 500, 504])
def test_other_errors_are_not_retried(fake_rest, status):
    fake_rest.answers = [(status, {"error": "no"}, 0), (200, {"model_version_status": []}, 0)]
    with pytest.raises(errors.ServingError):
        _transport(fake_rest, retries=3).predict("decoder", "png", {"latent": np.zeros((1, 1, 1, 4))})
    assert len(fake_rest.requests) == 1


def test_connection_refused_is_unavailable_after_retries():
    transport = RestTransport(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.01, timeout=5)
    with pytest.raises(errors.Unavailable, match="tried 3 times.*Connection refused"):
        transport.model_status("decoder")


def test_a_slow_answer_is_deadline_exceeded_and_not_repeated(fake_rest):
    fake_rest.answers = [(200, {"outputs": []}, 1.5)]
    start = time.monotonic()
    with pytest.raises(errors.DeadlineExceeded, match="within 0.3 s"):
        _transport(fake_rest, timeout=0.3, retries=3).predict("decoder", "png", {"latent": np.zeros((1, 1, 1, 4))})
    assert time.monotonic() - start < 1.4
    assert len(fake_rest.requests) == 1


def test_model_status_and_metadata_json(fake_rest):
    metadata = {
        "model_spec": {"name": "text_encoder", "signature_name": "", "version": "1"},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {
                            "tokens": {
                                "dtype": "DT_INT32",
                                "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": "77", "name": ""}]},
                                "name": "serving_default_tokens:0",
                            }
                        },
                        "outputs": {
                            "context": {
                                "dtype": "DT_FLOAT",
                                "tensor_shape": {"dim": [{"size": "-1"}, {"size": "77"}, {"size": "768"}]},
                                "name": "StatefulPartitionedCall:0",
                            }
                        },
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }
    fake_rest.answers = [(200, metadata, 0)]
    signatures = _transport(fake_rest).signatures("text_encoder", version=1)
    assert fake_rest.requests[0][:2] == ("GET", "/v1/models/text_encoder/versions/1/metadata")
    assert signatures["serving_default"]["inputs"] == {"tokens": ("int32", (None, 77))}
    assert signatures["serving_default"]["outputs"] == {"context": ("float32", (None, 77, 768))}
