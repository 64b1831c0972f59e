"""The Client over a fake transport: checks before sending, seeds, the chain and the one-request path, metadata."""

import math

import numpy as np
import pytest
from client_fakes import FakeTransport

from sd_client import Client, contract, png
from sd_client.errors import NotFound, PromptTooLong, ValidationError
from sd_client.tokenizer import UNCONDITIONAL_TOKENS, PromptTruncatedWarning


@pytest.fixture
def client(fake_transport, clip_vocab_path):
    return Client(transport=fake_transport, vocab_path=clip_vocab_path)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(num_steps=0), "num_steps 0 is out of range"),
        (dict(num_steps=1001), "num_steps 1001 is out of range"),
        (dict(num_steps=2.5), "num_steps must be an integer"),
        (dict(num_steps=True), "num_steps must be an integer"),
        (dict(guidance_scale=math.nan), "guidance_scale must be a finite number"),
        (dict(guidance_scale=math.inf), "guidance_scale must be a finite number"),
        (dict(guidance_scale="7"), "guidance_scale must be a finite number"),
        (dict(num_images=0), "num_images 0 is out of range"),
        (dict(num_images=9), "9 images in one request, the limit is 8"),
        (dict(seed=-1), r"seed -1 is out of range"),
        (dict(seed=2**31 - 1), r"seed 2147483647 is out of range"),
        (dict(seed=2**31 - 2, num_images=2), r"seed 2147483646 \+ 1 .* passes the largest seed"),
        (dict(seed=[1, 2], num_images=3), "2 seeds for 3 images"),
        (dict(seed=[1, -2]), "2 seeds for 1 images"),
        (dict(seed="42"), "seed must be None, an int or a list"),
        (dict(version=1, label="a"), "a version or a label, not both"),
        (dict(label="has space"), "not a TF Serving version label"),
        (dict(version=-1), "version -1 is out of range"),
        (dict(negative_prompt=["a", "b"]), "negative_prompt must be None, a str or a list of 1"),
    ],
)
def test_bad_arguments_are_refused_before_sending(client, fake_transport, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        client.generate("a cat", **kwargs)
    assert fake_transport.calls == []


def test_bad_prompts_are_refused_before_sending(client, fake_transport):
    for prompt, message in [([], "non-empty list"), (None, "must be a str"), ([1], "must be a str")]:
        with pytest.raises(ValidationError, match=message):
            client.generate(prompt)
    with pytest.raises(PromptTooLong, match="4097 UTF-8 bytes"):
        client.generate("x" * 4097)
    with pytest.raises(PromptTooLong, match="UTF-8 bytes"):
        client.generate("ok", negative_prompt="x" * 5000)
    assert fake_transport.calls == []


def test_max_images_is_configurable(fake_transport, clip_vocab_path):
    client = Client(transport=fake_transport, vocab_path=clip_vocab_path, max_images=2)
    with pytest.raises(ValidationError, match="3 images in one request, the limit is 2"):
        client.generate(["a", "b", "c"])
    assert len(Client(transport=FakeTransport(), vocab_path=clip_vocab_path, max_images=12)._plan(
        "a", None, 12, 50, 7.5, 0, None, None).seeds) == 12


def test_one_int_seed_gives_seed_plus_i_and_reaches_the_diffusion_model(client, fake_transport):
    results = client.generate("a cat", num_images=3, seed=2**31 - 4)  # 2**31-2 is the largest seed: still in range
    assert [r.seed for r in results] == [2**31 - 4, 2**31 - 3, 2**31 - 2]
    diffusion = [c for c in fake_transport.predictions() if c[1] == contract.DIFFUSION_MODEL]
    (call,) = diffusion
    assert call[2] == contract.SAMPLER_SIGNATURE and call[3]["sampler"] == np.array(b"DDIM", object)
    assert call[3]["seed"].dtype == np.int32 and call[3]["seed"].tolist() == [r.seed for r in results]


def test_seed_list_and_random_seeds(client):
    assert [r.seed for r in client.generate("a", num_images=2, seed=[7, 3])] == [7, 3]
    drawn = [r.seed for r in client.generate("a", num_images=3)]
    assert drawn == list(range(drawn[0], drawn[0] + 3)) and 0 <= drawn[0] <= contract.MAX_SEED - 2


def test_the_chain_calls_the_three_models_in_order_with_contract_inputs(client, fake_transport):
    results = client.generate(
        ["a cat", "a dog"], negative_prompt=[None, "blurry"], num_images=2, num_steps=20, guidance_scale=5.0, seed=10,
        label="tuned",
    )
    calls = fake_transport.predictions()
    assert [(c[1], c[2]) for c in calls] == [
        (contract.TEXT_ENCODER, contract.DEFAULT_SIGNATURE),
        (contract.DIFFUSION_MODEL, contract.SAMPLER_SIGNATURE),
        (contract.DECODER, contract.PNG_SIGNATURE),
    ]
    assert all(c[4:] == (None, "tuned") for c in calls)  # the label goes to every model
    encoder_inputs = calls[0][3]
    assert encoder_inputs["tokens"].shape == (2, 77)  # each prompt encoded once, not once per image
    assert encoder_inputs["negative_tokens"][0].tolist() == list(UNCONDITIONAL_TOKENS)
    assert encoder_inputs["negative_tokens"][1].tolist() != list(UNCONDITIONAL_TOKENS)
    diffusion_inputs = calls[1][3]
    assert set(diffusion_inputs) == set(contract.SIGNATURES[contract.DIFFUSION_MODEL]["with_sampler"]["inputs"])
    assert diffusion_inputs["num_steps"].dtype == np.int32 and diffusion_inputs["num_steps"] == 20
    assert diffusion_inputs["guidance_scale"].dtype == np.float32 and diffusion_inputs["guidance_scale"] == 5.0
    # context rows follow the prompts: the fake encoder puts the first BPE id of each prompt into its context
    first_ids = encoder_inputs["tokens"][:, 1]
    assert diffusion_inputs["context"][:, 0, 0].tolist() == [first_ids[0]] * 2 + [first_ids[1]] * 2
    assert [r.prompt for r in results] == ["a cat", "a cat", "a dog", "a dog"]
    assert [r.negative_prompt for r in results] == [None, None, "blurry", "blurry"]
    assert [r.seed for r in results] == [10, 11, 12, 13]
    assert [r.array[0, 0, 0] for r in results] == [10, 11, 12, 13]  # the fake decoder paints the seed
    assert {(r.width, r.height, r.model, r.model_version) for r in results} == {(128, 128, "diffusion_model", "tuned")}


def test_png_parameters_in_the_sd_ui_form(client):
    (result,) = client.generate("a cat, 4k", negative_prompt="blurry", num_steps=30, guidance_scale=7.5, seed=42)
    assert result.parameters == (
        "a cat, 4k\nNegative prompt: blurry\n"
        "Steps: 30, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 128x128, Model hash: 0123456789, "
        "Model: diffusion_model, Model version: 3, Precision: bfloat16"
    )
    assert png.read_text(result.png) == result.parameters
    (unicode,) = client.generate("東京の夜景", seed=1, version=2)
    assert unicode.parameters.startswith("東京の夜景\nSteps: 50,")
    assert unicode.parameters.endswith("Model version: 2, Precision: bfloat16")
    assert unicode.image.size == (128, 128)


def test_the_one_request_path_when_text_to_image_is_served(clip_vocab_path):
    transport = FakeTransport(served=(*contract.SPLIT_MODELS, contract.TEXT_TO_IMAGE))
    client = Client(transport=transport, vocab_path=clip_vocab_path)
    results = client.generate(["a cat", "a dog"], negative_prompt=[None, "blurry"], seed=5, num_steps=10)
    (call,) = transport.predictions()
    model, signature, inputs = call[1:4]
    assert (model, signature) == (contract.TEXT_TO_IMAGE, contract.SAMPLER_SIGNATURE)
    assert set(inputs) == set(contract.SIGNATURES[contract.TEXT_TO_IMAGE]["with_sampler"]["inputs"])
    assert inputs["prompt"].tolist() == [b"a cat", b"a dog"]
    assert inputs["negative_prompt"].tolist() == [b"", b"blurry"]  # "" = none, as the contract says
    assert inputs["seed"].tolist() == [5, 6] and inputs["num_steps"] == 10
    assert [r.model for r in results] == ["text_to_image"] * 2
    # status calls: text_to_image is served (and its version, for the PNG metadata); the chain has no later version
    statuses = [c[1:] for c in transport.calls if c[0] == "status"]
    assert statuses == [(contract.TEXT_TO_IMAGE, None, None), (contract.DIFFUSION_MODEL, None, None)]
    assert results[0].model_version == "3"
    assert "Model: text_to_image, Model version: 3" in results[0].parameters


def test_a_later_chain_version_wins_when_no_version_is_asked_for(clip_vocab_path):
    """An export with --no-text-to-image after one with it: "latest" means the same on both paths."""
    transport = FakeTransport(served=(*contract.SPLIT_MODELS, contract.TEXT_TO_IMAGE))
    transport.latest = {contract.TEXT_TO_IMAGE: 1, contract.DIFFUSION_MODEL: 2}
    client = Client(transport=transport, vocab_path=clip_vocab_path)
    (latest,) = client.generate("a", seed=1)
    assert latest.model == contract.DIFFUSION_MODEL and latest.model_version == "2"
    (first,) = client.generate("a", seed=1, version=1)
    assert first.model == contract.TEXT_TO_IMAGE and first.model_version == "1"
    (labelled,) = client.generate("a", seed=1, label="stock")
    assert labelled.model == contract.TEXT_TO_IMAGE
    transport.latest = {contract.TEXT_TO_IMAGE: 2, contract.DIFFUSION_MODEL: 2}
    assert client.generate("a", seed=1)[0].model == contract.TEXT_TO_IMAGE


def test_on_start_names_the_models_after_the_checks(clip_vocab_path):
    announced = []
    for served, expected in (
        (contract.SPLIT_MODELS, contract.SPLIT_MODELS),
        ((*contract.SPLIT_MODELS, contract.TEXT_TO_IMAGE), (contract.TEXT_TO_IMAGE,)),
    ):
        transport = FakeTransport(served=served)
        client = Client(transport=transport, vocab_path=clip_vocab_path)
        with pytest.raises(ValidationError):
            client.generate("a", num_steps=0, on_start=announced.append)
        assert announced == [] and transport.calls == []
        client.generate("a", seed=1, on_start=lambda models: announced.append((models, len(transport.predictions()))))
        assert announced.pop() == (expected, 0)  # before the first prediction request


def test_long_prompts_on_the_one_request_path_warn_once_each_or_are_refused(clip_vocab_path):
    long_prompt = "a red fox in the snow, " * 20
    transport = FakeTransport(served=(*contract.SPLIT_MODELS, contract.TEXT_TO_IMAGE))
    client = Client(transport=transport, vocab_path=clip_vocab_path)
    with pytest.warns(PromptTruncatedWarning) as warned:
        client.generate(long_prompt, negative_prompt=long_prompt + "blurry", num_images=3, seed=1)
    assert len(warned) == 2  # the prompt and the negative prompt, not once per image
    assert transport.predictions()[0][3]["prompt"].tolist() == [long_prompt.encode()] * 3  # the graph cuts it
    strict = Client(transport=FakeTransport(served=transport.served), vocab_path=clip_vocab_path, strict_prompts=True)
    with pytest.raises(PromptTooLong, match="dropped"):
        strict.generate(long_prompt, seed=1)
    assert strict.transport.predictions() == []


def test_a_text_to_image_model_added_later_is_used(clip_vocab_path):
    transport = FakeTransport()
    client = Client(transport=transport, vocab_path=clip_vocab_path)
    client.generate("a", seed=1)
    transport.served.add(contract.TEXT_TO_IMAGE)
    client.generate("a", seed=1)
    assert [c[1] for c in transport.predictions()] == [*contract.SPLIT_MODELS, contract.TEXT_TO_IMAGE]


def test_text_to_image_false_forces_the_chain_and_true_requires_it(clip_vocab_path):
    transport = FakeTransport(served=(*contract.SPLIT_MODELS, contract.TEXT_TO_IMAGE))
    Client(transport=transport, vocab_path=clip_vocab_path, text_to_image=False).generate("a", seed=1)
    assert [c[1] for c in transport.predictions()] == list(contract.SPLIT_MODELS)
    with pytest.raises(NotFound):
        Client(transport=FakeTransport(), vocab_path=clip_vocab_path, text_to_image=True).generate("a", seed=1)


def test_the_three_steps_separately(client, fake_transport):
    context, unconditional = client.encode_text(["a cat", "a dog"])
    assert context.shape == unconditional.shape == (2, 77, 768)
    latent = client.diffuse(context, unconditional, num_steps=3, seed=[4, 9])
    assert latent.shape == (2, 16, 16, 4) and latent[:, 0, 0, 0].tolist() == [4, 9]
    moved = client.diffuse(context, unconditional, initial_latent=latent)
    assert fake_transport.predictions()[-1][2] == contract.FROM_NOISE_SIGNATURE
    assert "seed" not in fake_transport.predictions()[-1][3]
    np.testing.assert_array_equal(moved, latent + 1)
    pngs = client.decode(latent)
    assert len(pngs) == 2 and all(p.startswith(b"\x89PNG") for p in pngs)
    assert client.decode(latent, as_png=False).dtype == np.uint8


def test_step_checks(client, fake_transport):
    context = np.zeros((2, 77, 768), np.float32)
    with pytest.raises(ValidationError, match="unconditional_context has shape"):
        client.diffuse(context, context[:1], seed=1)
    with pytest.raises(ValidationError, match="either seed or initial_latent"):
        client.diffuse(context, context, seed=1, initial_latent=np.zeros((2, 16, 16, 4)))
    with pytest.raises(ValidationError, match="initial_latent has 1 rows"):
        client.diffuse(context, context, initial_latent=np.zeros((1, 16, 16, 4)))
    with pytest.raises(ValidationError, match="latent must have 4 dimensions"):
        client.decode(np.zeros((16, 16, 4)))
    with pytest.raises(ValidationError, match="9 images"):
        client.decode(np.zeros((9, 16, 16, 4)))
    assert fake_transport.predictions() == []


def test_strict_prompts(fake_transport, clip_vocab_path):
    client = Client(transport=fake_transport, vocab_path=clip_vocab_path, strict_prompts=True)
    with pytest.raises(PromptTooLong, match="dropped"):
        client.generate("word " * 100)
    assert fake_transport.predictions() == []


def test_health_reports_each_model(clip_vocab_path):
    client = Client(transport=FakeTransport(), vocab_path=clip_vocab_path)
    report = client.health()
    assert set(report) == {*contract.SPLIT_MODELS, contract.TEXT_TO_IMAGE}
    assert isinstance(report[contract.TEXT_TO_IMAGE], NotFound)
    assert report[contract.DECODER][0].available


def test_import_loads_no_tensorflow_keras_or_grpc():
    import subprocess
    import sys

    code = (
        "import sys, sd_client, sd_client.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'keras_cv', 'grpc')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
