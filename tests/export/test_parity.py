"""The exported chain reproduces KerasCV's own StableDiffusion on the same weights, tokens and seeds.

The reference is keras_cv.models.StableDiffusion running the in-process models, which hold the outside oracle's
checkpoint converted from its LDM .safetensors; the exporter read the same weights from three formats (CKPT: the LDM
file, TEXT_ENCODER: a KerasCV .h5, DECODER: the diffusers folder), so this is also their round trip. The exported
models run in TF1 sessions, as TF Serving runs them.
"""

import io

import numpy as np
import pytest
from keras_cv.src.models.stable_diffusion.constants import _UNCONDITIONAL_TOKENS
from PIL import Image

STEPS = 3
GUIDANCE = 7.5


def tokens_of(reference, prompt):
    ids = reference.tokenizer.encode(prompt)
    return np.array([ids + [49407] * (77 - len(ids))], np.int32)


def exported_chain(served, tokens, negative_tokens, seeds, signature="serving_default", initial_latent=None):
    contexts = served["text_encoder"].run("serving_default", {"tokens": tokens, "negative_tokens": negative_tokens})
    inputs = dict(contexts, num_steps=np.int32(STEPS), guidance_scale=np.float32(GUIDANCE))
    if initial_latent is None:
        inputs["seed"] = np.array(seeds, np.int32)
    else:
        inputs["initial_latent"] = initial_latent
    latent = served["diffusion_model"].run(signature, inputs)["latent"]
    return served["decoder"].run("serving_default", {"latent": latent})["images"]


def assert_images_match(actual, expected):
    assert actual.shape == expected.shape and actual.dtype == np.uint8
    difference = np.abs(actual.astype(int) - expected.astype(int))
    assert difference.max() <= 1, f"{np.mean(difference > 1):.2%} of pixels differ by more than 1 level"
    assert expected.std() > 20, "reference image is flat: the comparison would prove nothing"


def test_text_encoder_matches_keras_cv(keras_cv_reference, keras_cv_served):
    tokens = tokens_of(keras_cv_reference, "a photograph of an astronaut riding a horse")
    unconditional = np.array([_UNCONDITIONAL_TOKENS], np.int32)
    outputs = keras_cv_served["text_encoder"].run("serving_default", {"tokens": tokens, "negative_tokens": unconditional})
    np.testing.assert_allclose(
        outputs["context"], keras_cv_reference.encode_text("a photograph of an astronaut riding a horse"), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        outputs["unconditional_context"], keras_cv_reference._get_unconditional_context(), rtol=1e-5, atol=1e-5
    )


def test_chain_matches_text_to_image(keras_cv_reference, keras_cv_served):
    prompt = "a cat wearing a hat"
    expected = keras_cv_reference.text_to_image(prompt, num_steps=STEPS, unconditional_guidance_scale=GUIDANCE, seed=42)
    unconditional = np.array([_UNCONDITIONAL_TOKENS], np.int32)
    actual = exported_chain(keras_cv_served, tokens_of(keras_cv_reference, prompt), unconditional, [42])
    assert_images_match(actual, expected)


def test_chain_matches_with_negative_prompt(keras_cv_reference, keras_cv_served):
    prompt, negative = "a cat wearing a hat", "blurry, low quality"
    expected = keras_cv_reference.text_to_image(
        prompt, negative_prompt=negative, num_steps=STEPS, unconditional_guidance_scale=GUIDANCE, seed=7
    )
    actual = exported_chain(
        keras_cv_served, tokens_of(keras_cv_reference, prompt), tokens_of(keras_cv_reference, negative), [7]
    )
    assert_images_match(actual, expected)


def test_from_noise_matches_generate_image(keras_cv_reference, keras_cv_served):
    prompt = "a lighthouse at dusk"
    noise = np.random.default_rng(3).standard_normal((1, 16, 16, 4)).astype(np.float32)
    expected = keras_cv_reference.generate_image(
        keras_cv_reference.encode_text(prompt), num_steps=STEPS, unconditional_guidance_scale=GUIDANCE,
        diffusion_noise=noise,
    )  # fmt: skip
    unconditional = np.array([_UNCONDITIONAL_TOKENS], np.int32)
    actual = exported_chain(
        keras_cv_served, tokens_of(keras_cv_reference, prompt), unconditional, None, "from_noise", noise
    )
    assert_images_match(actual, expected)


def test_png_signature_encodes_the_same_images(keras_cv_served):
    latent = np.random.default_rng(0).standard_normal((2, 16, 16, 4)).astype(np.float32)
    images = keras_cv_served["decoder"].run("serving_default", {"latent": latent})["images"]
    encoded = keras_cv_served["decoder"].run("png", {"latent": latent})["images_bytes"]
    assert encoded.shape == (2,)
    for png, image in zip(encoded, images):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)


@pytest.mark.parametrize("num_steps", [1, 2])
def test_step_counts_match_keras_cv_schedule(keras_cv_reference, keras_cv_served, num_steps):
    """1 step (KerasCV's ratio-1000 special case) and 2 steps (timesteps 0 and 999) follow KerasCV's schedule."""
    context = keras_cv_reference.encode_text("a red car")
    unconditional_context = keras_cv_reference._get_unconditional_context()
    noise = np.random.default_rng(11).standard_normal((1, 16, 16, 4)).astype(np.float32)
    expected = keras_cv_reference.generate_image(
        context, num_steps=num_steps, unconditional_guidance_scale=GUIDANCE, diffusion_noise=noise
    )
    latent = keras_cv_served["diffusion_model"].run(
        "from_noise",
        {
            "context": np.asarray(context),
            "unconditional_context": np.asarray(unconditional_context),
            "num_steps": np.int32(num_steps),
            "guidance_scale": np.float32(GUIDANCE),
            "initial_latent": noise,
        },
    )["latent"]
    actual = keras_cv_served["decoder"].run("serving_default", {"latent": latent})["images"]
    assert_images_match(actual, expected)
