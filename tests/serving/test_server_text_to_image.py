"""text_to_image through sd-model-server on the exporter's text_to_image.config: prompt strings in, PNG out,
over REST (requests, and the curl line the README shows) and gRPC (tensorflow-serving-api's PredictionServiceStub).
Every image equals the in-process TF1-session run of the same SavedModel; bad inputs get 400 / INVALID_ARGUMENT with a
message naming the input, and the server goes on serving."""

import base64
import io
import json
import subprocess
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import predict_pb2

from server_process import running_server
from server_requests import GrpcClients, assert_outputs_match, model_url, outputs_from_response, predict_request

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL = "text_to_image"
STEPS = 2
LATEST = 2
SIZE = 128  # the stand-ins' resolution (tests/conftest.py)
NON_UTF8 = b"caf\xe9 latin-1"  # 0xE9 alone is not UTF-8
LONG_PROMPT = "x" * 10_000  # contract: more than 4096 UTF-8 bytes is refused

def readme_curl_line():
    """The README's curl example, read from the README itself: the shell block under "One request with curl"."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### One request with curl", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


README_CURL = readme_curl_line()
README_URL = "http://127.0.0.1:8501"


def request_inputs(prompts, negatives, seeds, steps=STEPS, guidance=7.5):
    """text_to_image's inputs as numpy arrays (strings as UTF-8 bytes unless given as bytes)."""

    def strings(values):
        return np.array([v if isinstance(v, bytes) else v.encode() for v in values], object).reshape(len(values))

    return {
        "prompt": strings(prompts),
        "negative_prompt": strings(negatives),
        "num_steps": np.int32(steps),
        "guidance_scale": np.float32(guidance),
        "seed": np.array(seeds, np.int32).reshape(len(seeds)),
    }


def rest_body(inputs):
    """The columnar form: prompts as JSON strings (non-UTF-8 ones as {"b64": ...}), scalars bare, seeds a list."""

    def string(value):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode()}

    return {
        "inputs": {
            "prompt": [string(v) for v in inputs["prompt"]],
            "negative_prompt": [string(v) for v in inputs["negative_prompt"]],
            "num_steps": int(inputs["num_steps"]),
            "guidance_scale": float(inputs["guidance_scale"]),
            "seed": inputs["seed"].tolist(),
        }
    }


def rest_images(response):
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]  # one output: the bare tensor, a list of {"b64": ...}
    return np.array([base64.b64decode(item["b64"], validate=True) for item in outputs], object)


def pixels(png):
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image)


@pytest.fixture(scope="module")
def t2i_server(standin_repository):
    """sd-model-server on text_to_image.config as the exporter wrote it (/models/... base paths, labels)."""
    with running_server(standin_repository / "text_to_image.config", rest_api_timeout_in_ms=60_000) as running:
        yield running


@pytest.fixture(scope="module")
def t2i_clients(t2i_server):
    clients = GrpcClients(t2i_server.grpc_target)
    yield clients
    clients.close()


@pytest.fixture(scope="module")
def t2i_reference(standin_repository):
    from tf1 import Tf1Model

    models = {version: Tf1Model(standin_repository / MODEL / str(version)) for version in (1, 2)}
    yield models
    for model in models.values():
        model.close()


# Two rows: a short prompt with no negative one, and a long one (cut to 77 tokens in the graph) with one.
GOOD = request_inputs(
    ["a cat wearing a hat", "東京の夜景 " + "word " * 90], ["", "blurry, low quality"], [5, 2**31 - 2]
)


def test_the_server_loads_only_text_to_image_with_both_versions(t2i_server):
    status = requests.get(model_url(t2i_server.rest_url, MODEL), timeout=30).json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("1", "AVAILABLE"), ("2", "AVAILABLE")]
    # text_to_image holds the split models' weights: the config serves it alone (decisions.md)
    assert requests.get(model_url(t2i_server.rest_url, "diffusion_model"), timeout=30).status_code == 404
    metadata = requests.get(model_url(t2i_server.rest_url, MODEL) + "/metadata", timeout=30).json()
    inputs = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert {name: info["dtype"] for name, info in inputs.items()} == {
        "prompt": "DT_STRING", "negative_prompt": "DT_STRING", "num_steps": "DT_INT32",
        "guidance_scale": "DT_FLOAT", "seed": "DT_INT32",
    }  # fmt: skip


def test_rest_images_equal_the_in_process_run(t2i_server, t2i_reference):
    expected = t2i_reference[LATEST].run("serving_default", GOOD)
    response = requests.post(f"{model_url(t2i_server.rest_url, MODEL)}:predict", json=rest_body(GOOD), timeout=60)
    images = rest_images(response)
    assert [pixels(png).shape for png in images] == [(SIZE, SIZE, 3)] * 2
    assert_outputs_match({"images_bytes": images}, expected)
    assert not np.array_equal(pixels(images[0]), pixels(images[1])), "prompts and seeds must matter"


def test_grpc_images_equal_the_in_process_run(t2i_clients, t2i_reference):
    expected = t2i_reference[LATEST].run("serving_default", GOOD)
    response = t2i_clients.predict(MODEL, None, GOOD)
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL, LATEST)
    assert response.model_spec.signature_name == "serving_default"
    assert_outputs_match(outputs_from_response(response), expected)


def test_labels_and_versions_choose_the_weights(t2i_server, t2i_clients, t2i_reference):
    inputs = request_inputs(["a red fox"], [""], [7])
    stock = t2i_reference[1].run("serving_default", inputs)
    tuned = t2i_reference[2].run("serving_default", inputs)
    assert not np.array_equal(pixels(stock["images_bytes"][0]), pixels(tuned["images_bytes"][0]))
    url = model_url(t2i_server.rest_url, MODEL, label="stock") + ":predict"
    assert_outputs_match({"images_bytes": rest_images(requests.post(url, json=rest_body(inputs), timeout=60))}, stock)
    response = t2i_clients.predict(MODEL, None, inputs, version=1)
    assert response.model_spec.version.value == 1
    assert_outputs_match(outputs_from_response(response), stock)
    response = t2i_clients.predict(MODEL, None, inputs, label="tuned")
    assert_outputs_match(outputs_from_response(response), tuned)


def test_the_readme_curl_line_writes_a_png(t2i_server, t2i_reference, tmp_path):
    command = README_CURL.replace(README_URL, t2i_server.rest_url)
    assert command != README_CURL
    subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True, timeout=120)
    with Image.open(tmp_path / "astronaut.png") as image:
        assert (image.format, image.size, image.mode) == ("PNG", (SIZE, SIZE), "RGB")
        image.load()
        got = np.asarray(image)
    request = json.loads(README_CURL.split("-d '", 1)[1].split("'", 1)[0])
    body = request["inputs"]
    inputs = request_inputs(
        body["prompt"], body["negative_prompt"], body["seed"], body["num_steps"], body["guidance_scale"]
    )
    # the signature the warmup runs (one cached U-Net copy on a CPU), and what the README says it equals
    assert (request["signature_name"], body["sampler"]) == ("with_sampler", "DDIM")
    with_sampler = {**inputs, "sampler": np.array(body["sampler"].encode(), object)}
    expected = pixels(t2i_reference[LATEST].run("with_sampler", with_sampler)["images_bytes"][0])
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert expected.std() > 5
    default = pixels(t2i_reference[LATEST].run("serving_default", inputs)["images_bytes"][0])
    assert np.abs(default.astype(int) - expected.astype(int)).max() <= 1


# (id, inputs, text the message must contain): the same table over REST and gRPC
BAD_INPUTS = [
    ("non-utf8-prompt", request_inputs([NON_UTF8], [""], [1]), "prompt: not valid UTF-8"),
    ("non-utf8-negative-prompt", request_inputs(["ok"], [b"\xff\xfe"], [1]), "negative_prompt: not valid UTF-8"),
    ("10000-character-prompt", request_inputs([LONG_PROMPT], [""], [1]), "prompt: longer than 4096 UTF-8 bytes"),
    ("10000-character-negative-prompt", request_inputs(["ok"], [LONG_PROMPT], [1]),
     "negative_prompt: longer than 4096 UTF-8 bytes"),
    ("empty-batch", request_inputs([], [], []), "prompt has an empty batch"),
    ("seed-batch-differs", request_inputs(["a", "b"], ["", ""], [1]),
     "disagree on the batch dimension (dimension 0): negative_prompt has 2, prompt has 2, seed has 1"),
    ("negative-prompt-batch-differs", request_inputs(["a", "b"], [""], [1, 2]),
     "disagree on the batch dimension (dimension 0): negative_prompt has 1, prompt has 2"),
    ("seed-out-of-range", request_inputs(["a"], [""], [-1]), "seed values must be in [0, 2147483646]"),
    ("num-steps-zero", request_inputs(["a"], [""], [1], steps=0), "num_steps must be in 1..1000"),
    ("too-many-rows", request_inputs(["a"] * 9, [""] * 9, range(9)), "prompt has more than 8 rows"),
]  # fmt: skip


def assert_still_serving(server, clients):
    """The process is up and a small good request succeeds on both APIs."""
    assert server.process.poll() is None, "the server exited"
    small = request_inputs(["ok"], [""], [1], steps=1)
    response = requests.post(f"{model_url(server.rest_url, MODEL)}:predict", json=rest_body(small), timeout=60)
    assert len(rest_images(response)) == 1
    assert len(clients.predict(MODEL, None, small).outputs["images_bytes"].string_val) == 1


@pytest.mark.parametrize("inputs,text", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_rest_bad_inputs_are_400_naming_the_input(t2i_server, t2i_clients, inputs, text):
    response = requests.post(f"{model_url(t2i_server.rest_url, MODEL)}:predict", json=rest_body(inputs), timeout=60)
    assert response.status_code == 400, response.text
    assert text in response.json()["error"]
    assert_still_serving(t2i_server, t2i_clients)


@pytest.mark.parametrize("inputs,text", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_grpc_bad_inputs_are_invalid_argument_naming_the_input(t2i_server, t2i_clients, inputs, text):
    with pytest.raises(grpc.RpcError) as caught:
        t2i_clients.predict(MODEL, None, inputs)  # raw bytes in string_val, non-UTF-8 ones too
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert text in caught.value.details()
    assert_still_serving(t2i_server, t2i_clients)


def test_the_non_utf8_bytes_reach_the_graph_unchanged(t2i_clients):
    """The gRPC request carries the raw byte (no transcoding on the way), so the graph, not a codec, refuses it."""
    request = predict_request(MODEL, None, request_inputs([NON_UTF8], [""], [1]))
    assert request.inputs["prompt"].string_val == [NON_UTF8]
    assert tf.make_ndarray(request.inputs["prompt"])[0] == NON_UTF8


REST_FORM_ERRORS = [
    ("prompt-as-bare-string", {"inputs": dict(rest_body(GOOD)["inputs"], prompt="a cat")},
     "input 'prompt' has shape [], the signature expects [-1]"),
    ("row-form", {"instances": [{"prompt": "a", "negative_prompt": "", "num_steps": 2, "guidance_scale": 7.5,
                                 "seed": 1}]}, "scalars can only be sent in the columnar form"),
    ("missing-seed", {"inputs": {k: v for k, v in rest_body(GOOD)["inputs"].items() if k != "seed"}},
     "Missing named input: seed"),
    ("number-for-prompt", {"inputs": dict(rest_body(GOOD)["inputs"], prompt=[1, 2])},
     "is not of expected type: string"),
]  # fmt: skip


@pytest.mark.parametrize("body,text", [case[1:] for case in REST_FORM_ERRORS], ids=[c[0] for c in REST_FORM_ERRORS])
def test_rest_mistakes_in_the_json_name_the_input(t2i_server, t2i_clients, body, text):
    response = requests.post(f"{model_url(t2i_server.rest_url, MODEL)}:predict", json=body, timeout=60)
    assert response.status_code == 400, response.text
    assert text in response.json()["error"]
    assert_still_serving(t2i_server, t2i_clients)


def test_an_empty_batch_in_typed_fields_is_refused_too(t2i_server, t2i_clients):
    """An empty batch spelt the way non-TensorFlow clients build it: typed fields, explicit [0] shapes."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    for name, dtype in (("prompt", tf.string), ("negative_prompt", tf.string), ("seed", tf.int32)):
        request.inputs[name].dtype = dtype.as_datatype_enum
        request.inputs[name].tensor_shape.dim.add(size=0)
    request.inputs["num_steps"].CopyFrom(tf.make_tensor_proto(np.int32(2)))
    request.inputs["guidance_scale"].CopyFrom(tf.make_tensor_proto(np.float32(7.5)))
    with pytest.raises(grpc.RpcError) as caught:
        t2i_clients.prediction.Predict(request, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "prompt has an empty batch" in caught.value.details()
    assert_still_serving(t2i_server, t2i_clients)


def test_the_compose_health_check_passes_when_text_to_image_is_served(t2i_server, standin_repository):
    """compose.yaml's health check (ready.sh) accepts text_to_image AVAILABLE (SD_MODEL_CONFIG=text_to_image.config)."""
    rest_port = t2i_server.rest_url.rsplit(":", 1)[1]
    script = PROJECT_ROOT / "kubernetes" / "base" / "ready.sh"
    config = standin_repository / "text_to_image.config"
    healthy = subprocess.run(["bash", script, config, rest_port], capture_output=True, timeout=30)
    assert healthy.returncode == 0, healthy.stderr
