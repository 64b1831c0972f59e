"""Request builders and comparisons for the server tests, written from TF Serving's documentation (api_rest.md) and
the official protos, not from the server's code."""

import base64
import io
import os
import time

import grpc
import numpy as np
import requests
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

# Every signature of the test repository (the stand-in models plus the extra `strings` model), for both APIs.
ALL_SIGNATURES = [
    ("text_encoder", "serving_default"),
    ("diffusion_model", "serving_default"),
    ("diffusion_model", "from_noise"),
    ("decoder", "serving_default"),
    ("decoder", "png"),
    ("strings", "serving_default"),
]

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 2**31 - 1), ("grpc.max_send_message_length", 2**31 - 1)]
HTTP_TIMEOUT = 60
REST_TIMEOUT_MS = 3000  # the folder's server's --rest_api_timeout_in_ms: long for the stand-ins, short for `slow`


def json_value(array, b64=False):
    """A numpy array as REST JSON: nested lists; strings as text or {"b64": ...}."""
    array = np.asarray(array, dtype=object if isinstance(array, bytes) else None)
    if array.dtype == object:
        encode = (lambda v: {"b64": base64.b64encode(v).decode()}) if b64 else (lambda v: v.decode())
        encoded = np.frompyfunc(encode, 1, 1)(array)
        return encoded.tolist() if isinstance(encoded, np.ndarray) else encoded
    return array.tolist()


def row_body(inputs, signature_name=None, b64=False):
    """{"instances": [...]}: one object per batch item with every input (all inputs must be batched)."""
    batch = len(next(iter(inputs.values())))
    instances = [{name: json_value(array[index], b64) for name, array in inputs.items()} for index in range(batch)]
    body = {"instances": instances}
    if signature_name:
        body["signature_name"] = signature_name
    return body


def columnar_body(inputs, signature_name=None, b64=False):
    body = {"inputs": {name: json_value(array, b64) for name, array in inputs.items()}}
    if signature_name:
        body["signature_name"] = signature_name
    return body


def model_url(rest_url, model, version=None, label=None):
    url = f"{rest_url}/v1/models/{model}"
    if version is not None:
        url += f"/versions/{version}"
    if label is not None:
        url += f"/labels/{label}"
    return url


def rest_predict(rest_url, model, body, version=None, label=None):
    return requests.post(f"{model_url(rest_url, model, version, label)}:predict", json=body, timeout=HTTP_TIMEOUT)


def outputs_from_predictions(predictions, output_names):
    """Row-form predictions -> {output: list over the batch}."""
    if len(output_names) == 1:
        return {output_names[0]: predictions}
    return {name: [item[name] for item in predictions] for name in output_names}


def outputs_from_columnar(outputs, output_names):
    if len(output_names) == 1:
        return {output_names[0]: outputs}
    return outputs


def decode_json_output(name, value, like):
    """A JSON output as an array shaped and typed like the reference output `like`."""
    like = np.asarray(like)
    if like.dtype == object:
        flat = np.ravel(np.array(value, dtype=object))
        if name.endswith("_bytes"):
            items = [base64.b64decode(item["b64"], validate=True) for item in flat]
        else:
            items = [item.encode() for item in flat]
        return np.array(items, dtype=object).reshape(like.shape)
    return np.asarray(value, dtype=like.dtype)


def fill_model_spec(spec, model, version=None, label=None, signature_name=None):
    """A request's ModelSpec: only the fields given are set, so the server's defaults apply to the others."""
    spec.name = model
    if signature_name:
        spec.signature_name = signature_name
    if version is not None:
        spec.version.value = version
    if label is not None:
        spec.version_label = label


def predict_request(model, signature_name, inputs, version=None, label=None):
    request = predict_pb2.PredictRequest()
    fill_model_spec(request.model_spec, model, version, label, signature_name)
    for name, array in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    return request


def outputs_from_response(response):
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


class GrpcClients:
    """The official stubs over one channel with raised message limits."""

    def __init__(self, target):
        self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def predict(self, *args, timeout=HTTP_TIMEOUT, **kwargs):
        return self.prediction.Predict(predict_request(*args, **kwargs), timeout=timeout)

    def metadata(self, model, version=None, label=None):
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        fill_model_spec(request.model_spec, model, version, label)
        return self.prediction.GetModelMetadata(request, timeout=HTTP_TIMEOUT)

    def status(self, model, version=None, label=None):
        request = get_model_status_pb2.GetModelStatusRequest()
        fill_model_spec(request.model_spec, model, version, label)
        return self.models.GetModelStatus(request, timeout=HTTP_TIMEOUT)

    def close(self):
        self.channel.close()


def cpu_seconds(pid):
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_fraction(pid, seconds=1.0):
    """How much of one core the process used over the next `seconds`: ~1 while a session run still loops."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def png_pixels(data):
    return np.asarray(Image.open(io.BytesIO(data)))


def assert_outputs_match(got, expected):
    """Same outputs: floats within 1e-5 relative, uint8 within 1 level, PNGs by their pixels, strings exactly."""
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        want = np.asarray(want)
        have = np.asarray(got[name])
        assert have.shape == want.shape, f"{name}: shape {have.shape} != {want.shape}"
        if want.dtype == object:
            for have_item, want_item in zip(have.ravel(), want.ravel(), strict=True):
                if want_item.startswith(b"\x89PNG"):
                    diff = np.abs(png_pixels(have_item).astype(int) - png_pixels(want_item).astype(int))
                    assert diff.max() <= 1, f"{name}: PNG pixels differ by {diff.max()}"
                else:
                    assert have_item == want_item, f"{name}: {have_item!r} != {want_item!r}"
        elif want.dtype == np.uint8:
            assert have.dtype == np.uint8
            assert np.abs(have.astype(int) - want.astype(int)).max() <= 1, f"{name}: uint8 values differ"
        elif want.dtype.kind == "f":
            assert have.dtype == want.dtype, f"{name}: dtype {have.dtype} != {want.dtype}"
            np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(have, want, err_msg=name)
