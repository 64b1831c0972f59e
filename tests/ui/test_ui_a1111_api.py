"""The AUTOMATIC1111 API, driven by the real `webuiapi` client from PyPI: txt2img gives the image `sd-client generate`
gives for the seed, the models list and switch work, and bad requests are 4xx with a message, never a 500."""

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import webuiapi
from PIL import Image

from sd_client import Client
from sd_client.png import read_text

SIZE = 128  # the stand-in export's size
STEPS = 2


@pytest.fixture(scope="module")
def api(ui):
    host, port = ui.url.removeprefix("http://").split(":")
    return webuiapi.WebUIApi(host=host, port=int(port), sampler="DDIM", steps=STEPS)


@pytest.fixture(autouse=True)
def latest_checkpoint(api):
    """Each test starts on the latest version, as a fresh `sd-client ui` does."""
    yield
    api.set_options({"sd_model_checkpoint": "version 2"})


def test_txt2img_with_a_seed_is_the_image_sd_client_generate_makes(api, ui, tmp_path):
    command = [str(Path(sys.executable).parent / "sd-client"), "generate", "a lighthouse", "--steps", str(STEPS),
               "--seed", "11", "--guidance", "7", "--label", "stock", "--url", ui.rest_url, "--vocab", str(ui.vocab),
               "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    api.util_set_model("stock")
    result = api.txt2img(prompt="a lighthouse", seed=11, cfg_scale=7, width=SIZE, height=SIZE, batch_size=2)
    with Image.open(tmp_path / "image-0-seed-11.png") as expected:
        assert np.array_equal(np.asarray(result.images[0].convert("RGB")), np.asarray(expected.convert("RGB")))
    assert result.info["all_seeds"] == [11, 12] and result.info["sd_model_name"] == "stock (version 1)"
    assert "Seed: 11," in result.info["infotexts"][0] and result.parameters["prompt"] == "a lighthouse"


def test_the_models_list_and_the_switch(api, ui):
    titles = ["stock (version 1)", "tuned (version 2)", "version 1", "version 2"]
    assert api.util_get_model_names() == titles
    assert api.util_get_current_model() == "version 2"
    api.util_set_model("tuned")  # webuiapi picks the closest title
    assert api.util_get_current_model() == "tuned (version 2)"
    tuned = api.txt2img(prompt="a fox", seed=3, cfg_scale=7.5, width=SIZE, height=SIZE).images[0]
    with Client(ui.rest_url, vocab_path=ui.vocab) as client:
        (expected,) = client.generate("a fox", num_steps=STEPS, seed=3, label="tuned")
        (stock,) = client.generate("a fox", num_steps=STEPS, seed=3, label="stock")
    assert np.array_equal(np.asarray(tuned.convert("RGB")), expected.array)
    assert not np.array_equal(expected.array, stock.array)


def test_n_iter_continues_the_seeds_and_sd_model_checkpoint_overrides(ui):
    body = {"prompt": "a fox", "steps": STEPS, "seed": 5, "batch_size": 1, "n_iter": 2, "sampler_name": "ddim",
            "override_settings": {"sd_model_checkpoint": "stock"}, "unknown_field": {"ignored": True}}  # fmt: skip
    response = requests.post(f"{ui.url}/sdapi/v1/txt2img", json=body, timeout=120)
    assert response.status_code == 200, response.text
    answer = response.json()
    info = json.loads(answer["info"])
    assert info["all_seeds"] == [5, 6] and info["sampler_name"] == "DDIM" and info["sd_model_name"] == "stock (version 1)"
    pngs = [base64.b64decode(image) for image in answer["images"]]
    assert [Image.open(io.BytesIO(png)).size for png in pngs] == [(SIZE, SIZE)] * 2
    assert "Model version: stock" in read_text(pngs[1]) and "Seed: 6," in read_text(pngs[1])


def test_samplers_are_those_the_checkpoint_offers(api, ui):
    with Client(ui.rest_url) as client:
        assert api.util_get_sampler_names() == sorted(client.samplers(version=2))


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"prompt": "a fox", "steps": 0}, 422, "greater than or equal to 1"),
        ({"prompt": "a fox", "steps": "many"}, 422, "valid integer"),
        ({"prompt": "a fox", "seed": -2}, 422, "greater than or equal to -1"),
        ({"prompt": "a fox", "cfg_scale": "nan"}, 422, "finite number"),
        ({"prompt": "a fox", "batch_size": 9}, 422, "the limit is 8"),
        ({"prompt": "a fox", "n_iter": 17}, 422, "less than or equal to 16"),
        ({"prompt": "x" * 5000}, 422, "the limit is 4096"),
        ({"prompt": "a fox", "width": 512, "height": 512}, 422, "makes 128x128 images"),
        ({"prompt": "a fox", "sampler_name": "PLMS"}, 422, "sampler 'PLMS' is not offered"),
        ({"prompt": "a fox", "override_settings": {"sd_model_checkpoint": "sd-v1-5"}}, 422, "is not served"),
        ({"prompt": "a fox", "seed": 2147483646, "batch_size": 2}, 422, "passes the largest seed"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(ui, body, status, message):
    response = requests.post(f"{ui.url}/sdapi/v1/txt2img", json={"steps": STEPS, **body}, timeout=120)
    assert response.status_code == status, response.text
    assert message in response.text


def test_choosing_a_model_that_is_not_served_is_refused(ui):
    response = requests.post(f"{ui.url}/sdapi/v1/options", json={"sd_model_checkpoint": "v1-5-pruned"}, timeout=30)
    assert response.status_code == 422 and "stock (version 1)" in response.json()["detail"]
    assert requests.get(f"{ui.url}/sdapi/v1/options", timeout=30).json()["sd_model_checkpoint"] == "version 2"
