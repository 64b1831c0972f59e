"""End to end on the stand-in repository (the real exporter's SavedModels, 128x128): REST and gRPC through the local
TF-Serving-API server (sd-model-server, a subprocess, on models.config), and in-process on the same config, give the
same images for the same seeds. The one-request path (text_to_image) is in test_client_text_to_image.py."""

import subprocess
import sys
import time

import numpy as np
import pytest

from sd_client import Client, DeadlineExceeded, InvalidArgument, NotFound, png

TRANSPORTS = ("rest", "grpc", "local")
PROMPT = "a photograph of an astronaut riding a horse"


@pytest.fixture(scope="module")
def clients(chain_server, standin_repository, clip_vocab_path):
    rest_url, grpc_target = chain_server
    made = {
        "rest": Client(rest_url, vocab_path=clip_vocab_path),
        "grpc": Client(f"grpc://{grpc_target}", vocab_path=clip_vocab_path),
        # the config the server runs, not the folder (which also serves text_to_image): the chain on every transport
        "local": Client(standin_repository / "models.config", vocab_path=clip_vocab_path),
    }
    yield made
    for client in made.values():
        client.close()


def _generate(client, **kwargs):
    kwargs = dict(dict(num_images=2, num_steps=3, seed=42), **kwargs)
    return client.generate(PROMPT, **kwargs)


@pytest.mark.parametrize("label", ["stock", "tuned"])
def test_the_three_transports_give_the_same_images(clients, label):
    results = {name: _generate(client, negative_prompt="blurry", label=label) for name, client in clients.items()}
    reference = [r.array for r in results["local"]]
    assert reference[0].shape == (128, 128, 3)
    for name in ("rest", "grpc"):
        for got, expected in zip(results[name], reference):
            assert np.abs(got.array.astype(int) - expected.astype(int)).max() <= 1, name
    assert {r.parameters for r in results["rest"]} == {r.parameters for r in results["local"]}
    assert [r.seed for r in results["grpc"]] == [42, 43]


def test_labels_choose_different_weights(clients):
    stock = _generate(clients["grpc"], label="stock")
    tuned = _generate(clients["grpc"], label="tuned")
    assert not np.array_equal(stock[0].array, tuned[0].array)
    latest = _generate(clients["grpc"])
    np.testing.assert_array_equal(latest[0].array, tuned[0].array)  # tuned is version 2, the latest
    assert "Model version: 2" in latest[0].parameters


def test_each_image_of_a_batch_is_reproduced_alone_by_its_seed(clients):
    batch = _generate(clients["rest"], num_images=3, seed=100)
    alone = clients["rest"].generate(PROMPT, num_steps=3, seed=102)
    assert alone[0].seed == 102
    assert np.abs(alone[0].array.astype(int) - batch[2].array.astype(int)).max() <= 1


def test_the_steps_separately_agree_across_transports(clients):
    outputs = {}
    for name, client in clients.items():
        context, unconditional = client.encode_text([PROMPT, "a cat"], [None, "blurry"], version=1)
        latent = client.diffuse(context, unconditional, num_steps=2, seed=[1, 2], version=1)
        moved = client.diffuse(context, unconditional, num_steps=2, initial_latent=latent, version=1)
        images = client.decode(moved, version=1, as_png=False)
        outputs[name] = (context, latent, moved, images)
    for name in ("rest", "grpc"):
        for got, expected in zip(outputs[name][:3], outputs["local"][:3]):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert np.abs(outputs[name][3].astype(int) - outputs["local"][3].astype(int)).max() <= 1


@pytest.mark.parametrize("name", TRANSPORTS)
def test_server_side_errors_are_typed(clients, name):
    client = clients[name]
    with pytest.raises(NotFound):
        client.decode(np.zeros((1, 16, 16, 4), np.float32), version=99)
    with pytest.raises(InvalidArgument, match="nope"):
        client.decode(np.zeros((1, 16, 16, 4), np.float32), label="nope")
    context = np.zeros((1, 77, 768), np.float32)
    with pytest.raises(InvalidArgument, match="num_steps"):  # past the client's own checks: the graph's check
        client.transport.predict(
            "diffusion_model",
            "serving_default",
            {"context": context, "unconditional_context": context, "num_steps": np.int32(0),
             "guidance_scale": np.float32(7.5), "seed": np.array([1], np.int32)},
        )  # fmt: skip
    with pytest.raises(InvalidArgument):
        client.decode(np.zeros((1, 17, 16, 4), np.float32))  # a latent of the wrong size


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_a_deadline_too_short_is_deadline_exceeded(chain_server, scheme):
    url = chain_server.rest_url if scheme == "http" else f"grpc://{chain_server.grpc_target}"
    context = np.zeros((8, 77, 768), np.float32)
    # 8 images x 1000 steps, the contract's most: about half a second on the stand-ins on a fast CPU, so the deadline
    # is a fifth of what this request takes here, not a fixed number that a faster machine could beat
    with Client(url) as client:
        started = time.monotonic()
        client.diffuse(context, context, num_steps=1000, seed=1)
        took = time.monotonic() - started
    with Client(url, timeout=took / 5) as client, pytest.raises(DeadlineExceeded):
        client.diffuse(context, context, num_steps=1000, seed=1)


def test_health_lists_both_versions(clients):
    for client in clients.values():
        report = client.health()
        assert sorted(s.version for s in report["diffusion_model"]) == [1, 2], client.transport
        assert all(s.available for s in report["decoder"])
        assert isinstance(report["text_to_image"], NotFound)


def test_the_cli_against_the_server(chain_server, clip_vocab_path, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sd_client.cli", "generate", PROMPT, "-n", "2", "--steps", "3", "--seed", "42",
         "--label", "stock", "--url", f"grpc://{chain_server.grpc_target}", "--vocab", str(clip_vocab_path),
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "generating 2 images with text_encoder -> diffusion_model -> decoder (three requests)..." in done.stderr
    assert "image-1-seed-43.png\tseed 43" in done.stdout
    data = (tmp_path / "image-0-seed-42.png").read_bytes()
    expected = "Seed: 42, Size: 128x128, Model hash: 1111111111, Model: diffusion_model, Model version: stock"
    assert expected in png.read_text(data)
    assert (tmp_path / "grid.png").is_file()

