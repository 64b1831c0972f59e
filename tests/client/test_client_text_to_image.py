"""The one-request path end to end on the stand-in repository: generate() against text_to_image over REST and gRPC
(the local server started on text_to_image.config) and in-process (the model folder, which holds both configs) gives
the images the three-model chain gives (the local server started on models.config) for the same arguments."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sd_client import Client, NotFound, PromptTruncatedWarning, png

PROMPT = "a photograph of an astronaut riding a horse"
LONG_PROMPT = "a watercolor of a lighthouse on a cliff at dusk, waves, gulls, " * 8  # about 130 tokens
STEPS = 3
CASES = {
    "negative prompt, 2 images": dict(prompt=PROMPT, negative_prompt="blurry", num_images=2, seed=42),
    "no negative prompt, 3 images": dict(prompt=PROMPT, num_images=3, seed=100),
    "two prompts, one negative": dict(prompt=["a cat", "a dog"], negative_prompt=[None, "blurry"], seed=9),
    "prompts over 77 tokens": dict(prompt=LONG_PROMPT, negative_prompt=LONG_PROMPT + " blurry", seed=7),
    "label stock": dict(prompt=PROMPT, label="stock", seed=5),
    "version 1": dict(prompt=PROMPT, version=1, seed=5),
    "latest (tuned)": dict(prompt=PROMPT, seed=5),
}
ONE_REQUEST = ("rest", "grpc", "local")


@pytest.fixture(scope="module")
def clients(one_request_server, standin_repository, clip_vocab_path):
    """Clients that should take the one-request path: the text_to_image server, and the model folder in-process."""
    made = {
        "rest": Client(one_request_server.rest_url, vocab_path=clip_vocab_path),
        "grpc": Client(f"grpc://{one_request_server.grpc_target}", vocab_path=clip_vocab_path),
        "local": Client(models_dir=standin_repository, vocab_path=clip_vocab_path),
    }
    yield made
    for client in made.values():
        client.close()


@pytest.fixture(scope="module")
def chain(chain_server, clip_vocab_path):
    """A client of the server on models.config: generate() finds no text_to_image there and falls back to the chain."""
    with Client(chain_server.rest_url, vocab_path=clip_vocab_path) as client:
        yield client


@pytest.fixture(scope="module")
def chain_results(chain):
    cache = {}

    def results(case):
        if case not in cache:
            cache[case] = _generate(chain, case)
        return cache[case]

    return results


def _generate(client, case):
    kwargs = dict(CASES[case], num_steps=STEPS)
    if case == "prompts over 77 tokens":
        with pytest.warns(PromptTruncatedWarning) as warned:  # the client warns on both paths ...
            results = client.generate(**kwargs)
        assert len(warned) == 2 and "dropped" in str(warned[0].message)
        return results
    return client.generate(**kwargs)


def _assert_same_images(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.array.shape == b.array.shape == (128, 128, 3)
        assert np.abs(a.array.astype(int) - b.array.astype(int)).max() <= 1


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("transport", ONE_REQUEST)
def test_one_request_gives_the_chain_images(clients, chain_results, transport, case):
    expected = chain_results(case)
    got = _generate(clients[transport], case)  # ... and the graph cuts long prompts the way the client does
    assert {r.model for r in expected} == {"diffusion_model"}
    assert {r.model for r in got} == {"text_to_image"}
    _assert_same_images(got, expected)
    assert [r.seed for r in got] == [r.seed for r in expected]
    # the metadata differ only in the model that made the image; its version means the same export on both paths
    assert [r.parameters.replace("Model: text_to_image", "Model: diffusion_model") for r in got] == [
        r.parameters for r in expected
    ]


def test_seeds_are_seed_plus_i_and_each_image_is_reproduced_alone(clients):
    batch = clients["grpc"].generate(PROMPT, num_images=3, num_steps=STEPS, seed=100)
    assert [r.seed for r in batch] == [100, 101, 102]
    assert not np.array_equal(batch[0].array, batch[1].array)
    (alone,) = clients["grpc"].generate(PROMPT, num_steps=STEPS, seed=102)
    _assert_same_images([alone], [batch[2]])


def test_labels_and_versions_choose_the_weights(clients):
    client = clients["rest"]
    stock = client.generate(PROMPT, num_steps=STEPS, seed=5, label="stock")
    tuned = client.generate(PROMPT, num_steps=STEPS, seed=5, label="tuned")
    latest = client.generate(PROMPT, num_steps=STEPS, seed=5)
    assert not np.array_equal(stock[0].array, tuned[0].array)
    np.testing.assert_array_equal(latest[0].array, tuned[0].array)  # tuned is version 2, the latest
    np.testing.assert_array_equal(client.generate(PROMPT, num_steps=STEPS, seed=5, version=1)[0].array, stock[0].array)
    # the hash is the version's checkpoint (tests/standins.py PROVENANCE): each label names its own
    tail = "Model: text_to_image, Model version: {}, Precision: float32"
    assert stock[0].parameters.endswith("Model hash: 1111111111, " + tail.format("stock"))
    assert latest[0].parameters.endswith("Model hash: 2222222222, " + tail.format(2))
    with pytest.raises(NotFound):
        client.generate(PROMPT, num_steps=STEPS, seed=5, version=7)  # neither path serves it


def test_one_request_per_generate_on_the_server(one_request_server, clip_vocab_path):
    """The server on text_to_image.config has no split models, so only one request can have made the images."""
    with Client(one_request_server.rest_url, vocab_path=clip_vocab_path) as client:
        report = client.health()
        assert isinstance(report["text_encoder"], NotFound) and isinstance(report["diffusion_model"], NotFound)
        assert sorted(s.version for s in report["text_to_image"]) == [1, 2]
    with Client(one_request_server.rest_url, vocab_path=clip_vocab_path, text_to_image=False) as chain_only:
        with pytest.raises(NotFound, match="text_encoder"):
            chain_only.generate(PROMPT, num_steps=STEPS, seed=1)


def test_requiring_text_to_image_where_it_is_not_served_is_not_found(chain_server, clip_vocab_path):
    with Client(chain_server.rest_url, vocab_path=clip_vocab_path, text_to_image=True) as client:
        with pytest.raises(NotFound, match="text_to_image"):
            client.generate(PROMPT, num_steps=STEPS, seed=1)


def test_in_process_a_config_file_picks_the_path(standin_repository, clip_vocab_path, chain_results):
    """The folder serves both configs (generate() takes text_to_image); one config file serves what it lists."""
    expected = chain_results("label stock")
    with Client(standin_repository / "models.config", vocab_path=clip_vocab_path) as split:
        assert isinstance(split.health()["text_to_image"], NotFound)
        got = _generate(split, "label stock")
        assert got[0].model == "diffusion_model"
        _assert_same_images(got, expected)
    with Client(standin_repository / "text_to_image.config", vocab_path=clip_vocab_path) as one:
        got = _generate(one, "label stock")
        assert got[0].model == "text_to_image"
        _assert_same_images(got, expected)
        with pytest.raises(NotFound, match="text_encoder"):
            one.encode_text(PROMPT)
    with Client(standin_repository, vocab_path=clip_vocab_path) as folder:
        assert all(not isinstance(statuses, NotFound) for statuses in folder.health().values())
        context, _ = folder.encode_text(PROMPT, label="stock")  # the step methods still have the split models
        assert context.shape == (1, 77, 768)


def test_the_cli_says_which_path_and_records_it(one_request_server, clip_vocab_path, tmp_path, chain):
    done = subprocess.run(
        [sys.executable, "-m", "sd_client.cli", "generate", PROMPT, "-n", "2", "--steps", str(STEPS), "--seed", "42",
         "--label", "stock", "--url", one_request_server.rest_url, "--vocab", str(clip_vocab_path),
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "generating 2 images with text_to_image (one request)..." in done.stderr
    assert "image-1-seed-43.png\tseed 43" in done.stdout
    data = (tmp_path / "image-0-seed-42.png").read_bytes()
    assert png.read_text(data) == (
        f"{PROMPT}\nSteps: {STEPS}, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 128x128, Model hash: 1111111111, "
        "Model: text_to_image, Model version: stock, Precision: float32"
    )
    expected = chain.generate(PROMPT, num_images=2, num_steps=STEPS, seed=42, label="stock")
    for index, result in enumerate(expected):
        with Image.open(tmp_path / f"image-{index}-seed-{42 + index}.png") as saved:
            image = np.asarray(saved.convert("RGB"))
        assert np.abs(image.astype(int) - result.array.astype(int)).max() <= 1
