"""The REST API with plain HTTP clients (requests, curl): both request forms, versions, labels, status, metadata, b64,
timeouts. Every prediction is checked against the in-process TF1-session run of the same SavedModel."""

import base64
import json
import subprocess
import time

import numpy as np
import pytest
import requests
from google.protobuf import json_format

from server_requests import (
    ALL_SIGNATURES,
    REST_TIMEOUT_MS,
    assert_outputs_match,
    busy_fraction,
    columnar_body,
    decode_json_output,
    model_url,
    outputs_from_columnar,
    outputs_from_predictions,
    rest_predict,
    row_body,
)

# Row form needs a batch dimension on every input: the diffusion model's scalars rule it out.
ROW_SIGNATURES = [pair for pair in ALL_SIGNATURES if pair[0] != "diffusion_model"]
LATEST = {"text_encoder": 2, "diffusion_model": 2, "decoder": 2, "strings": 1}


def expected_outputs(reference, model, signature, inputs, version=None):
    return reference[(model, version or LATEST[model])].run(signature, inputs)


def rest_outputs(response, expected, form):
    assert response.status_code == 200, response.text
    body = response.json()
    names = sorted(expected)
    if form == "row":
        assert list(body) == ["predictions"]
        raw = outputs_from_predictions(body["predictions"], names)
    else:
        assert list(body) == ["outputs"]
        raw = outputs_from_columnar(body["outputs"], names)
    return {name: decode_json_output(name, value, expected[name]) for name, value in raw.items()}


@pytest.mark.parametrize("model,signature", ALL_SIGNATURES)
def test_columnar_predict_matches_the_in_process_run(server, reference, examples, model, signature):
    inputs = examples[(model, signature)]
    expected = expected_outputs(reference, model, signature, inputs)
    response = rest_predict(server.rest_url, model, columnar_body(inputs, signature))
    assert_outputs_match(rest_outputs(response, expected, "columnar"), expected)


@pytest.mark.parametrize("model,signature", ROW_SIGNATURES)
def test_row_predict_matches_the_in_process_run(server, reference, examples, model, signature):
    inputs = examples[(model, signature)]
    expected = expected_outputs(reference, model, signature, inputs)
    response = rest_predict(server.rest_url, model, row_body(inputs, signature))
    assert_outputs_match(rest_outputs(response, expected, "row"), expected)


def test_single_output_and_single_input_forms(server, reference, examples):
    """One input: instances may be bare values; one output: predictions/outputs hold the bare tensor."""
    latent = examples[("decoder", "serving_default")]["latent"]
    expected = expected_outputs(reference, "decoder", "serving_default", {"latent": latent})
    bare_rows = rest_predict(server.rest_url, "decoder", {"instances": latent.tolist()})
    bare_columns = rest_predict(server.rest_url, "decoder", {"inputs": latent.tolist()})
    assert np.asarray(bare_rows.json()["predictions"]).shape == (2, 128, 128, 3)
    assert_outputs_match(rest_outputs(bare_rows, expected, "row"), expected)
    assert_outputs_match(rest_outputs(bare_columns, expected, "columnar"), expected)


def test_float_outputs_round_trip_exactly(server, reference, examples):
    """Floats are written so that parsing them as float32 gives back the very same values."""
    inputs = examples[("text_encoder", "serving_default")]
    expected = expected_outputs(reference, "text_encoder", "serving_default", inputs)
    outputs = rest_predict(server.rest_url, "text_encoder", columnar_body(inputs)).json()["outputs"]
    for name in ("context", "unconditional_context"):
        np.testing.assert_array_equal(np.asarray(outputs[name], np.float32), expected[name])


@pytest.mark.parametrize("model", ["text_encoder", "decoder"])
def test_versions_and_labels_choose_the_version(server, reference, examples, model):
    signature = "serving_default"
    inputs = examples[(model, signature)]
    body = columnar_body(inputs)
    by_version = {v: expected_outputs(reference, model, signature, inputs, v) for v in (1, 2)}
    first = next(iter(by_version[1]))
    assert not np.array_equal(by_version[1][first], by_version[2][first]), "the two versions must differ"
    cases = [({"version": 1}, 1), ({"version": 2}, 2), ({"label": "stock"}, 1), ({"label": "tuned"}, 2), ({}, 2)]
    for selector, version in cases:
        response = rest_predict(server.rest_url, model, body, **selector)
        assert_outputs_match(rest_outputs(response, by_version[version], "columnar"), by_version[version])


def test_b64_inputs_equal_plain_strings(server, reference, examples):
    inputs = examples[("strings", "serving_default")]
    expected = expected_outputs(reference, "strings", "serving_default", inputs)
    for body in (columnar_body(inputs, b64=True), row_body(inputs, b64=True)):
        form = "row" if "instances" in body else "columnar"
        assert_outputs_match(rest_outputs(rest_predict(server.rest_url, "strings", body), expected, form), expected)


def test_bytes_outputs_come_back_as_b64_and_other_strings_as_text(server):
    binary = bytes(range(256))
    response = rest_predict(
        server.rest_url, "strings", {"inputs": {"text": [{"b64": base64.b64encode(binary).decode()}]}}
    )
    outputs = response.json()["outputs"]
    assert outputs["echo_bytes"] == [{"b64": base64.b64encode(binary).decode()}]
    assert outputs["length"] == [256]
    plain = rest_predict(server.rest_url, "strings", {"instances": ["abc"]}).json()["predictions"]
    assert plain == [{"echo_bytes": {"b64": base64.b64encode(b"abc").decode()}, "length": 3, "upper": "ABC"}]


def test_tf_text_ops_load_and_run(server):
    """TF Text's ops are registered in the server, as they are linked into tensorflow_model_server."""
    response = rest_predict(server.rest_url, "strings", {"signature_name": "words", "instances": ["a b  c", "d"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [3, 1]}


def test_model_status_lists_versions_and_resolves_labels(server):
    statuses = requests.get(model_url(server.rest_url, "diffusion_model"), timeout=30).json()["model_version_status"]
    assert [(entry["version"], entry["state"]) for entry in statuses] == [("1", "AVAILABLE"), ("2", "AVAILABLE")]
    assert statuses[0]["status"] == {"error_code": "OK", "error_message": ""}
    one = requests.get(model_url(server.rest_url, "decoder", version=1), timeout=30).json()
    assert [entry["version"] for entry in one["model_version_status"]] == ["1"]
    tuned = requests.get(model_url(server.rest_url, "decoder", label="tuned"), timeout=30).json()
    assert [entry["version"] for entry in tuned["model_version_status"]] == ["2"]


def test_metadata_has_the_signature_defs_of_the_chosen_version(server, reference):
    for selector, version in (({}, 2), ({"version": 1}, 1), ({"label": "stock"}, 1)):
        response = requests.get(model_url(server.rest_url, "diffusion_model", **selector) + "/metadata", timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_spec"] == {"name": "diffusion_model", "version": str(version), "signature_name": ""}
        signatures = body["metadata"]["signature_def"]["signature_def"]
        meta_graph = reference[("diffusion_model", version)].meta_graph
        for name in ("serving_default", "from_noise"):
            expected = json_format.MessageToDict(meta_graph.signature_def[name], preserving_proto_field_name=True)
            assert signatures[name]["inputs"].keys() == expected["inputs"].keys()
            for tensor, info in expected["inputs"].items():
                assert signatures[name]["inputs"][tensor]["dtype"] == info["dtype"]
                assert [d["size"] for d in signatures[name]["inputs"][tensor]["tensor_shape"].get("dim", [])] == [
                    d["size"] for d in info["tensor_shape"].get("dim", [])
                ]
            assert signatures[name]["method_name"] == "tensorflow/serving/predict"


@pytest.mark.parametrize("form", ["row", "columnar"])
def test_curl_predicts_in_both_forms(server, reference, examples, tmp_path, form):
    inputs = examples[("decoder", "png")]
    expected = expected_outputs(reference, "decoder", "png", inputs)
    body = row_body(inputs, "png") if form == "row" else columnar_body(inputs, "png")
    (tmp_path / "body.json").write_text(json.dumps(body))
    result = subprocess.run(
        ["curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@body.json",
         "-w", "\n%{http_code}", f"{server.rest_url}/v1/models/decoder:predict"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    text, status = result.stdout.rsplit("\n", 1)
    assert status == "200", text
    key = "predictions" if form == "row" else "outputs"
    images = [base64.b64decode(item["b64"]) for item in json.loads(text)[key]]
    assert_outputs_match({"images_bytes": np.array(images, object)}, expected)


def test_curl_sees_errors_as_json_with_the_http_status(server):
    result = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", f"{server.rest_url}/v1/models/no_such_model"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    text, status = result.stdout.rsplit("\n", 1)
    assert status == "404"
    assert "no_such_model" in json.loads(text)["error"]


def test_rest_timeout_answers_504_and_the_server_goes_on(server):
    started = time.monotonic()
    response = rest_predict(server.rest_url, "slow", {"inputs": {"iterations": 2**31 - 1}})
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.json()["error"]
    assert REST_TIMEOUT_MS / 1000 - 0.5 < elapsed < REST_TIMEOUT_MS / 1000 + 20
    assert busy_fraction(server.process.pid) < 0.2, "the session run went on after the timeout"
    quick = rest_predict(server.rest_url, "slow", {"inputs": {"iterations": 10}})
    assert quick.status_code == 200 and isinstance(quick.json()["outputs"], float)
