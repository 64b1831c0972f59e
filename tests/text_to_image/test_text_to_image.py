"""text_to_image: one request, prompt strings in, PNG out — the same images as the three-model chain, on ops the
model server has, with bad inputs refused by the graph."""

import io

import numpy as np
import pytest
import tensorflow as tf
from graph_ops import graph_op_types, unserved_op_types
from PIL import Image
from tf1 import Tf1Model, served_version

STEPS = 2


def decode_pngs(encoded):
    return np.stack([np.asarray(Image.open(io.BytesIO(png))) for png in encoded])


def as_bytes(text):
    return text.encode() if isinstance(text, str) else text


def request(prompts, negatives, seeds, steps=STEPS, guidance=7.5):
    return {
        "prompt": np.array([as_bytes(p) for p in prompts], object),
        "negative_prompt": np.array([as_bytes(p) for p in negatives], object),
        "num_steps": np.int32(steps),
        "guidance_scale": np.float32(guidance),
        "seed": np.array(seeds, np.int32),
    }


def chain(served, keras_rows, prompts, negatives, seeds, steps=STEPS, guidance=7.5):
    """The split models, fed with KerasCV's tokenizer's ids (cut to 77 as the thin client cuts them)."""
    contexts = served["text_encoder"].run(
        "serving_default", {"tokens": keras_rows(prompts), "negative_tokens": keras_rows(negatives)}
    )
    inputs = dict(contexts, num_steps=np.int32(steps), guidance_scale=np.float32(guidance), seed=np.array(seeds, np.int32))
    latent = served["diffusion_model"].run("serving_default", inputs)["latent"]
    return decode_pngs(served["decoder"].run("png", {"latent": latent})["images_bytes"])


@pytest.fixture(scope="module")
def standin_text_to_image(standin_repository):
    model = Tf1Model(standin_repository / "text_to_image" / "1")
    yield model
    model.close()


@pytest.fixture(scope="module")
def standin_chain(standin_repository):
    yield from served_version(standin_repository)


def test_every_op_is_one_the_model_server_has(standin_text_to_image):
    ops = graph_op_types(standin_text_to_image.meta_graph)
    assert {"While", "LookupTableFindV2", "EncodePng", "StatelessRandomNormalV2"} <= ops  # the whole pipeline is there
    assert not unserved_op_types(standin_text_to_image.meta_graph)


def test_vocabulary_is_an_asset(standin_repository):
    assets = list((standin_repository / "text_to_image" / "1" / "assets").iterdir())
    assert [a.name for a in assets] == ["clip_bpe_merges.tsv"]
    assert (standin_repository / "text_to_image" / "1" / "saved_model.pb").stat().st_size < 20_000_000


def test_images_equal_the_chain(standin_text_to_image, standin_chain, keras_rows):
    prompts = ["a cat wearing a hat", "東京の夜景 " + "word " * 90]  # the second is cut to 77 tokens
    negatives = ["", "blurry, low quality"]
    seeds = [5, 2**31 - 2]
    encoded = standin_text_to_image.run("serving_default", request(prompts, negatives, seeds))["images_bytes"]
    actual = decode_pngs(encoded)
    expected = chain(standin_chain, keras_rows, prompts, negatives, seeds)
    assert actual.shape == (2, 128, 128, 3)
    assert np.abs(actual.astype(int) - expected.astype(int)).max() <= 1
    assert expected.std() > 5


def test_versions_differ_by_their_weights(standin_repository):
    """Version 2 (other weights) gives another image for the same request: each version carries its own weights."""
    images = []
    for version in (1, 2):
        model = Tf1Model(standin_repository / "text_to_image" / str(version))
        images.append(decode_pngs(model.run("serving_default", request(["a cat"], [""], [1]))["images_bytes"]))
        model.close()
    assert not np.array_equal(*images)


BAD = [
    (request([b"caf\xe9 latin-1"], [""], [1]), "prompt: not valid UTF-8"),
    (request(["ok"], ["\udcff".encode("utf-8", "surrogatepass")], [1]), "negative_prompt: not valid UTF-8"),
    (request(["x" * 10_000], [""], [1]), "prompt: longer than 4096 UTF-8 bytes"),
    (request([], [], []), "prompt has an empty batch"),
    (request(["a", "b"], [""], [1, 2]), "negative_prompt and prompt disagree"),
    (request(["a", "b"], ["", ""], [1]), "seed and prompt disagree"),
    (request(["a"], [""], [-3]), "seed values must be in"),
    (request(["a"], [""], [1], steps=0), "num_steps must be in 1..1000"),
    (request(["a"], [""], [1], guidance=float("nan")), "guidance_scale must be finite"),
    (request(["a"] * 9, [""] * 9, list(range(9))), "more than 8 rows"),
]


@pytest.mark.parametrize("inputs, message", BAD, ids=[b[1] for b in BAD])
def test_bad_inputs_are_invalid_argument(standin_text_to_image, inputs, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        standin_text_to_image.run("serving_default", inputs)
    good = standin_text_to_image.run("serving_default", request(["a"], [""], [1], steps=1))
    assert len(good["images_bytes"]) == 1


@pytest.mark.loads_real_export
def test_real_architecture_matches_keras_cv(keras_cv_repository, keras_cv_reference):
    """On KerasCV's real architectures: text_to_image's PNG equals KerasCV's own text_to_image for the same seed."""
    model = Tf1Model(keras_cv_repository / "text_to_image" / "1")
    try:
        assert not unserved_op_types(model.meta_graph)
        for prompt, negative, seed in (("a red bicycle", "", 11), ("a red bicycle", "rust", 12)):
            expected = keras_cv_reference.text_to_image(
                prompt, negative_prompt=negative or None, num_steps=STEPS, seed=seed
            )
            encoded = model.run("serving_default", request([prompt], [negative], [seed]))["images_bytes"]
            actual = decode_pngs(encoded)
            assert np.abs(actual.astype(int) - expected.astype(int)).max() <= 1
            assert expected.std() > 20
    finally:
        model.close()
