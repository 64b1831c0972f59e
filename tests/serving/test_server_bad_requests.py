"""Bad requests over REST and gRPC: each gets the right 4xx / status code and a message that names what was wrong,
the server stays up and the next good request succeeds. Codes follow TF Serving (e.g. an unknown model is NOT_FOUND,
an unknown label or signature is not)."""

import json

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
)

from server_requests import GrpcClients, fill_model_spec, predict_request

TOKENS = np.full((1, 77), 49407, np.int32)
LATENT = np.zeros((1, 16, 16, 4), np.float32)
CONTEXT = np.zeros((1, 77, 768), np.float32)
DIFFUSION = {
    "context": CONTEXT,
    "unconditional_context": CONTEXT,
    "num_steps": np.int32(1),
    "guidance_scale": np.float32(7.5),
    "seed": np.array([1], np.int32),
}


def columns(**inputs):
    return {"inputs": {name: np.asarray(value).tolist() for name, value in inputs.items()}}


def diffusion(**changes):
    return columns(**dict(DIFFUSION, **changes))


# (id, method, path, body, HTTP status, text the error message must contain); body: a JSON value or raw bytes
REST_CASES = [
    ("unknown-model", "POST", "/v1/models/nope:predict", columns(latent=LATENT), 404,
     "Servable not found for request: Latest(nope)"),
    ("unknown-version", "POST", "/v1/models/decoder/versions/7:predict", columns(latent=LATENT), 404,
     "Specific(decoder, 7)"),
    ("unknown-label", "POST", "/v1/models/decoder/labels/beta:predict", columns(latent=LATENT), 400,
     "Unrecognized servable version label: beta"),
    ("unknown-signature", "POST", "/v1/models/decoder:predict", dict(columns(latent=LATENT), signature_name="jpeg"),
     400, 'Serving signature name: "jpeg" not found'),
    ("init-op-signature", "POST", "/v1/models/decoder:predict",
     dict(columns(latent=LATENT), signature_name="__saved_model_init_op"), 400, "__saved_model_init_op"),
    ("malformed-json", "POST", "/v1/models/decoder:predict", b'{"inputs": [1, ', 400, "JSON Parse error"),
    ("empty-body", "POST", "/v1/models/decoder:predict", b"", 400, "The document is empty"),
    ("not-utf8", "POST", "/v1/models/decoder:predict", b"\xff\xfe\xfa{", 400, "JSON Parse error"),
    ("deep-nesting", "POST", "/v1/models/decoder:predict", b"[" * 200000, 400, "JSON Parse error"),
    ("body-not-object", "POST", "/v1/models/decoder:predict", [1, 2], 400, "Is not object"),
    ("instances-and-inputs", "POST", "/v1/models/decoder:predict",
     {"instances": [LATENT[0].tolist()], "inputs": LATENT.tolist()}, 400, "only one of 'inputs' or 'instances'"),
    ("neither-instances-nor-inputs", "POST", "/v1/models/decoder:predict", {"latent": LATENT.tolist()}, 400,
     "Missing 'inputs' or 'instances' key"),
    ("signature-name-not-string", "POST", "/v1/models/decoder:predict", dict(columns(latent=LATENT), signature_name=3),
     400, "'signature_name' key must be a string value"),
    ("instances-not-list", "POST", "/v1/models/decoder:predict", {"instances": {"latent": 1}}, 400,
     "Expecting 'instances' to be an list/array"),
    ("instances-empty", "POST", "/v1/models/decoder:predict", {"instances": []}, 400, "No values in 'instances'"),
    ("missing-input", "POST", "/v1/models/text_encoder:predict", columns(tokens=TOKENS), 400,
     "Missing named input: negative_tokens"),
    ("extra-input", "POST", "/v1/models/text_encoder:predict",
     columns(tokens=TOKENS, negative_tokens=TOKENS, bogus=TOKENS), 400, "Unknown named input: bogus"),
    ("row-extra-key", "POST", "/v1/models/text_encoder:predict",
     {"instances": [{"tokens": TOKENS[0].tolist(), "negative_tokens": TOKENS[0].tolist(), "bogus": 1}]}, 400,
     "does not have named input: bogus"),
    ("row-missing-key", "POST", "/v1/models/text_encoder:predict", {"instances": [{"tokens": TOKENS[0].tolist()}]},
     400, "keys must be equal to: negative_tokens,tokens"),
    ("row-plain-list-for-two-inputs", "POST", "/v1/models/text_encoder:predict", {"instances": TOKENS.tolist()}, 400,
     "instances is a plain list"),
    ("row-batch-items-disagree", "POST", "/v1/models/text_encoder:predict",
     {"instances": [{"tokens": [1] * 77, "negative_tokens": [1] * 77},
                    {"tokens": [1] * 76, "negative_tokens": [1] * 77}]}, 400, "Expecting shape [77] but got: [76]"),
    ("float-for-int32", "POST", "/v1/models/text_encoder:predict",
     columns(tokens=TOKENS.astype(np.float32) + 0.5, negative_tokens=TOKENS), 400, "is not of expected type: int32"),
    ("bool-for-int32", "POST", "/v1/models/diffusion_model:predict", diffusion(num_steps=True), 400,
     "is not of expected type: int32"),
    ("string-for-float", "POST", "/v1/models/decoder:predict", {"inputs": [[[["x"] * 4] * 16] * 16]}, 400,
     "is not a number"),
    ("null-for-float", "POST", "/v1/models/diffusion_model:predict", diffusion(guidance_scale=None), 400,
     "is not a number"),
    ("int32-out-of-range", "POST", "/v1/models/diffusion_model:predict", diffusion(seed=[2**40]), 400,
     "outside the range of int32"),
    ("wrong-shape", "POST", "/v1/models/text_encoder:predict", columns(tokens=TOKENS[:, :76], negative_tokens=TOKENS),
     400, "input 'tokens' has shape [1,76], the signature expects [-1,77]"),
    ("wrong-rank", "POST", "/v1/models/decoder:predict", columns(latent=LATENT[0]), 400,
     "input 'latent' has shape [16,16,4], the signature expects [-1,16,16,4]"),
    ("ragged-list", "POST", "/v1/models/text_encoder:predict",
     {"inputs": {"tokens": [[1] * 77, [1] * 76], "negative_tokens": [[1] * 77] * 2}}, 400, "rectangular"),
    ("batch-dimensions-disagree", "POST", "/v1/models/text_encoder:predict",
     columns(tokens=np.concatenate([TOKENS, TOKENS]), negative_tokens=TOKENS), 400,
     "disagree on the batch dimension (dimension 0): negative_tokens has 1, tokens has 2"),
    ("scalar-in-row-form", "POST", "/v1/models/diffusion_model:predict",
     {"instances": [{name: np.asarray(v).tolist() for name, v in DIFFUSION.items()}]}, 400,
     "scalars can only be sent in the columnar form"),
    ("scalar-sent-as-list", "POST", "/v1/models/diffusion_model:predict", diffusion(num_steps=[1]), 400,
     "input 'num_steps' has shape [1], the signature expects [] (a scalar)"),
    ("seed-out-of-range-in-graph", "POST", "/v1/models/diffusion_model:predict", diffusion(seed=[-1]), 400, "seed"),
    ("bad-base64", "POST", "/v1/models/strings:predict", {"inputs": {"text": [{"b64": "%%%"}]}}, 400,
     "Unable to base64 decode"),
    ("b64-object-not-string", "POST", "/v1/models/strings:predict", {"inputs": {"text": [{"b64": 5}]}}, 400,
     "not formatted correctly for base64 data"),
    ("number-for-string", "POST", "/v1/models/strings:predict", {"inputs": {"text": [5]}}, 400,
     "is not of expected type: string"),
    ("scalar-output-in-row-form", "POST", "/v1/models/strings:predict",
     {"signature_name": "total", "instances": ["a"]}, 400, "Tensor name: total has no shape information"),
    ("classify-not-implemented", "POST", "/v1/models/decoder:classify", columns(latent=LATENT), 501, ":classify"),
    ("get-on-predict", "GET", "/v1/models/decoder:predict", None, 400, "Malformed request: GET"),
    ("post-on-status", "POST", "/v1/models/decoder", columns(latent=LATENT), 400, "Malformed request: POST"),
    ("unknown-verb", "POST", "/v1/models/decoder:explain", columns(latent=LATENT), 400, "Malformed request"),
    ("no-model-name", "GET", "/v1/models", None, 400, "Missing model name in request."),
    ("not-the-api", "GET", "/v2/models/decoder", None, 404, "the API lives under /v1/"),
    ("status-unknown-model", "GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("status-unknown-version", "GET", "/v1/models/decoder/versions/9", None, 404,
     "Could not find version 9 of model decoder"),
    ("status-unknown-label", "GET", "/v1/models/decoder/labels/beta", None, 400,
     "Unrecognized servable version label: beta"),
    ("metadata-unknown-model", "GET", "/v1/models/nope/metadata", None, 404, "Latest(nope)"),
    ("metadata-unknown-label", "GET", "/v1/models/decoder/labels/beta/metadata", None, 400,
     "Unrecognized servable version label: beta"),
]  # fmt: skip


def grpc_predict(model="decoder", signature=None, inputs=None, change=None, **selector):
    def call(clients):
        request = predict_request(model, signature, {"latent": LATENT} if inputs is None else inputs, **selector)
        if change:
            change(request)
        return clients.prediction.Predict(request, timeout=60)

    return call


def too_many_typed_values(request):
    """More float_val than the shape holds (fewer are padded with the last value, as TensorFlow does)."""
    proto = request.inputs["latent"]
    proto.tensor_content = b""
    proto.float_val.extend([0.5] * (16 * 16 * 4 + 1))


def add_filter(*names):
    return lambda request: request.output_filter.extend(names)


def short_tensor_content(request):
    request.inputs["latent"].tensor_content = request.inputs["latent"].tensor_content[:-4]


def metadata(model="decoder", fields=("signature_def",), spec=True):
    def call(clients):
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
        if spec:
            request.model_spec.name = model
        return clients.prediction.GetModelMetadata(request, timeout=60)

    return call


def status(model="decoder", version=None, spec=True):
    def call(clients):
        request = get_model_status_pb2.GetModelStatusRequest()
        if spec:
            fill_model_spec(request.model_spec, model, version)
        return clients.models.GetModelStatus(request, timeout=60)

    return call


def classify(clients):
    request = classification_pb2.ClassificationRequest(model_spec=model_pb2.ModelSpec(name="decoder"))
    return clients.prediction.Classify(request, timeout=60)


TEXT = {"tokens": TOKENS, "negative_tokens": TOKENS}
Code = grpc.StatusCode
GRPC_CASES = [
    ("unknown-model", grpc_predict("nope"), Code.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ("unknown-version", grpc_predict(version=7), Code.NOT_FOUND, "Specific(decoder, 7)"),
    ("unknown-label", grpc_predict(label="beta"), Code.INVALID_ARGUMENT, "Unrecognized servable version label: beta"),
    ("unknown-signature", grpc_predict(signature="jpeg"), Code.FAILED_PRECONDITION,
     'Serving signature key "jpeg" not found'),
    ("no-model-name", grpc_predict(""), Code.INVALID_ARGUMENT, "ModelSpec has no name specified"),
    ("missing-input", grpc_predict("text_encoder", inputs={"tokens": TOKENS}), Code.INVALID_ARGUMENT,
     "Missing but required: {negative_tokens}"),
    ("extra-input", grpc_predict("text_encoder", inputs=dict(TEXT, bogus=TOKENS)), Code.INVALID_ARGUMENT,
     "Sent extra: {bogus}"),
    ("wrong-dtype", grpc_predict("text_encoder", inputs=dict(TEXT, tokens=TOKENS.astype(np.int64))),
     Code.INVALID_ARGUMENT, "input 'tokens' has dtype int64, the signature expects int32"),
    ("string-for-float", grpc_predict(inputs={"latent": np.array([b"x"], object)}), Code.INVALID_ARGUMENT,
     "has dtype string, the signature expects float32"),
    ("wrong-shape", grpc_predict(inputs={"latent": np.zeros((1, 8, 8, 4), np.float32)}), Code.INVALID_ARGUMENT,
     "input 'latent' has shape [1,8,8,4], the signature expects [-1,16,16,4]"),
    ("batch-dimensions-disagree",
     grpc_predict("text_encoder", inputs=dict(TEXT, tokens=np.concatenate([TOKENS] * 2))), Code.INVALID_ARGUMENT,
     "disagree on the batch dimension"),
    ("scalar-sent-as-vector",
     grpc_predict("diffusion_model", inputs=dict(DIFFUSION, num_steps=np.array([1], np.int32))), Code.INVALID_ARGUMENT,
     "the signature expects [] (a scalar)"),
    ("seed-out-of-range-in-graph",
     grpc_predict("diffusion_model", inputs=dict(DIFFUSION, seed=np.array([-5], np.int32))), Code.INVALID_ARGUMENT,
     "seed"),
    ("inconsistent-tensor-proto", grpc_predict(change=short_tensor_content), Code.INVALID_ARGUMENT,
     "input 'latent' is not a valid TensorProto"),
    ("too-many-typed-values", grpc_predict(change=too_many_typed_values), Code.INVALID_ARGUMENT,
     "input 'latent' has 1025 values in float_val, more than its shape [1,16,16,4] holds (1024)"),
    ("unknown-output-filter", grpc_predict(change=add_filter("pixels")), Code.INVALID_ARGUMENT,
     "output tensor alias not found in signature: pixels"),
    ("duplicate-output-filter", grpc_predict(change=add_filter("images", "images")), Code.INVALID_ARGUMENT,
     "duplicate output tensor alias: images"),
    ("init-op-signature", grpc_predict(signature="__saved_model_init_op", inputs={}), Code.INVALID_ARGUMENT,
     "__saved_model_init_op"),
    ("metadata-unsupported-field", metadata(fields=["graph"]), Code.INVALID_ARGUMENT,
     "Metadata field graph is not supported"),
    ("metadata-no-field", metadata(fields=[]), Code.INVALID_ARGUMENT, "must specify at least one metadata_field"),
    ("metadata-no-model-spec", metadata(spec=False), Code.INVALID_ARGUMENT, "Missing ModelSpec"),
    ("metadata-unknown-model", metadata("nope"), Code.NOT_FOUND, "Latest(nope)"),
    ("status-unknown-model", status("nope"), Code.NOT_FOUND, "Could not find any versions of model nope"),
    ("status-unknown-version", status(version=9), Code.NOT_FOUND, "Could not find version 9 of model decoder"),
    ("status-no-model-spec", status(spec=False), Code.INVALID_ARGUMENT, "Missing ModelSpec"),
    ("classify-not-implemented", classify, Code.UNIMPLEMENTED, ""),
]  # fmt: skip


@pytest.fixture(scope="module")
def clients(server):
    clients = GrpcClients(server.grpc_target)
    yield clients
    clients.close()


def assert_still_serving(server, clients):
    assert server.process.poll() is None, "the server exited"
    good = requests.post(f"{server.rest_url}/v1/models/strings:predict", json={"instances": ["ok"]}, timeout=60)
    assert good.status_code == 200 and good.json()["predictions"][0]["length"] == 2
    response = clients.predict("strings", None, {"text": np.array([b"ok"], object)})
    assert list(response.outputs["length"].int_val) == [2]


def test_the_tables_are_large_enough():
    assert len(REST_CASES) + len(GRPC_CASES) >= 30
    assert len({case[0] for case in REST_CASES}) == len(REST_CASES)
    assert len({case[0] for case in GRPC_CASES}) == len(GRPC_CASES)


@pytest.mark.parametrize("method,path,body,status,text", [case[1:] for case in REST_CASES],
                         ids=[case[0] for case in REST_CASES])  # fmt: skip
def test_rest_bad_request(server, clients, method, path, body, status, text):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body)
    response = requests.request(method, server.rest_url + path, data=data, timeout=60)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    message = response.json()["error"]
    assert text in message
    assert_still_serving(server, clients)


@pytest.mark.parametrize("call,code,text", [case[1:] for case in GRPC_CASES], ids=[case[0] for case in GRPC_CASES])
def test_grpc_bad_request(server, clients, call, code, text):
    with pytest.raises(grpc.RpcError) as caught:
        call(clients)
    assert caught.value.code() == code, caught.value.details()
    assert text in caught.value.details()
    assert_still_serving(server, clients)
