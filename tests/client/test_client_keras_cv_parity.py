"""The client on KerasCV's real architectures (random weights, 128x128, exported by sd-export with label 'tuned')
gives KerasCV's own StableDiffusion images for the same prompts and seeds: over REST and gRPC (the three-model chain,
one local server on models.config) and in-process from the model folder (text_to_image, one request).
The server runs as it does by default (oneDNN's weight cache off).

Each loaded copy of the real models takes about 4.1 GB and this process already holds the reference, so the images
are made in one module fixture, one copy at a time: the server is stopped before the in-process sessions open, and
those are closed before the tests compare.
"""

import gc

import numpy as np
import pytest
from server_process import running_server

from sd_client import Client

STEPS = 2
CASES = {  # name -> (prompt, negative prompt, seed, label); one seed, so only the negative prompt tells them apart
    "no negative prompt": ("a red bicycle leaning on a wall", None, 11, None),
    "negative prompt, label": ("a red bicycle leaning on a wall", "rust, blurry", 11, "tuned"),
}
EXPECTED_MODEL = {"rest": "diffusion_model", "grpc": "diffusion_model", "local": "text_to_image"}
REST_TIMEOUT_MS = 600_000  # the real U-Net on 2 shared CPU cores: well past TF Serving's 30 s default

pytestmark = pytest.mark.loads_real_export  # the in-process transport


@pytest.fixture(scope="module")
def reference_images(keras_cv_reference):
    return {
        name: keras_cv_reference.text_to_image(prompt, negative_prompt=negative, num_steps=STEPS, seed=seed)[0]
        for name, (prompt, negative, seed, _) in CASES.items()
    }


def _generate_cases(client):
    results = {}
    for name, (prompt, negative, seed, label) in CASES.items():
        (results[name],) = client.generate(prompt, negative_prompt=negative, num_steps=STEPS, seed=seed, label=label)
    return results


@pytest.fixture(scope="module")
def client_results(keras_cv_repository, clip_vocab_path):
    """transport -> case -> GenerationResult, made one loaded copy of the models at a time."""
    results = {}
    config = keras_cv_repository / "models.config"
    # The server as it runs by default: oneDNN's weight cache would hold several more copies of the U-Net (README,
    # CPU speed), more than this machine has beside the test process.
    default = {"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": None}
    with running_server(config, environment=default, rest_api_timeout_in_ms=REST_TIMEOUT_MS) as server:
        for name, url in (("rest", server.rest_url), ("grpc", f"grpc://{server.grpc_target}")):
            with Client(url, vocab_path=clip_vocab_path) as client:
                results[name] = _generate_cases(client)
    with Client(models_dir=keras_cv_repository, vocab_path=clip_vocab_path) as client:  # closes its sessions
        results["local"] = _generate_cases(client)
    gc.collect()  # let the closed sessions' graphs go before the next module loads anything
    return results


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("transport", EXPECTED_MODEL)
def test_images_equal_keras_cv(client_results, reference_images, transport, case):
    expected = reference_images[case]
    result = client_results[transport][case]
    assert result.model == EXPECTED_MODEL[transport]
    assert result.seed == CASES[case][2]
    actual = result.array
    assert actual.shape == expected.shape == (128, 128, 3)
    difference = np.abs(actual.astype(int) - expected.astype(int))
    assert difference.max() <= 1, f"{np.mean(difference > 1):.2%} of pixels differ by more than 1 level"
    assert expected.std() > 20, "reference image is flat: the comparison would prove nothing"


def test_the_negative_prompt_changes_the_image(reference_images):
    """The two cases share prompt and seed: a client that dropped the negative prompt would fail the second."""
    first, second = (reference_images[name] for name in CASES)
    assert np.abs(first.astype(int) - second.astype(int)).max() > 1
