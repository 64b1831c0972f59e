"""The oracle from outside: diffusers' and transformers' SD 1.4 models (random weights, randomized norms), saved as an
LDM .safetensors and a diffusers folder by their own process. KerasCV's models holding the weights sd_export converted
(the session fixtures, loaded from the LDM file) match their forward passes; the diffusers folder converts to exactly
the same weights; a swapped norm fails the same check."""

import json
from pathlib import Path

import numpy as np
import pytest
import sd14_layouts
from reference_numerics import KERAS_CV, REFERENCE, set_numerics
from safetensors import safe_open
from sd_export.checkpoints import open_checkpoint
from sd_export.checkpoints.assign import converted
from sd_export.weights import Components, load_part

MAX_RELATIVE_L2 = 5e-4
MAX_ABSOLUTE = 1e-3
MAX_REFERENCE_RELATIVE_L2 = 2e-5  # with diffusers' numerics only float32 rounding is left


@pytest.fixture(scope="module")
def reference(sd14_checkpoint):
    with np.load(sd14_checkpoint["reference"]) as data:
        return dict(data)


@pytest.fixture(scope="module")
def loaded_image_encoder(sd14_checkpoint, image_encoder):
    load_part(open_checkpoint(sd14_checkpoint["ldm"], "diffusion_model"), "image_encoder", image_encoder)
    return image_encoder


def nhwc(array):
    return np.transpose(array, (0, 2, 3, 1))


def mismatch(actual, expected):
    """(relative L2, max |difference|), after checking the expected output is not trivial."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    assert expected.std() > 1e-2, "the reference output is flat: the comparison would prove nothing"
    difference = actual - expected
    return np.linalg.norm(difference) / np.linalg.norm(expected), np.abs(difference).max()


def assert_matches(actual, expected):
    relative, absolute = mismatch(actual, expected)
    assert relative <= MAX_RELATIVE_L2 and absolute <= MAX_ABSOLUTE, (relative, absolute)


def unet_output(components, keras_cv_reference, reference):
    embedding = keras_cv_reference._get_timestep_embedding(int(reference["timestep"]), 1)
    return components.diffusion_model.predict_on_batch([nhwc(reference["latent"]), embedding, reference["context"]])


def test_unet_matches_diffusers(keras_cv_components, keras_cv_reference, reference):
    assert_matches(unet_output(keras_cv_components, keras_cv_reference, reference), nhwc(reference["unet"]))


def test_text_encoder_matches_transformers(keras_cv_components, reference):
    tokens = reference["tokens"].astype(np.int32)
    positions = np.arange(77, dtype=np.int32)[None]
    assert_matches(keras_cv_components.text_encoder.predict_on_batch([tokens, positions]), reference["text_encoder"])


def test_decoder_matches_diffusers(keras_cv_components, reference):
    decoded = keras_cv_components.decoder.predict_on_batch(nhwc(reference["latent"]))
    assert_matches(decoded, nhwc(reference["decoder"]))


def test_image_encoder_matches_diffusers(loaded_image_encoder, reference):
    encoded = loaded_image_encoder.predict_on_batch(nhwc(reference["image"]))
    assert_matches(encoded, nhwc(reference["encoder_mean"]))


def test_a_swapped_norm_fails_the_same_check(keras_cv_components, reference):
    """Negative control: the decoder's first mid-block resnet with its two GroupNorms swapped (as a name mix-up would
    load them) misses the reference by far more than the tolerance."""
    block = keras_cv_components.decoder.layers[3]
    first = [np.array(weight) for weight in block.norm1.weights]
    second = [np.array(weight) for weight in block.norm2.weights]
    try:
        for variable, value in zip(block.norm1.weights + block.norm2.weights, second + first, strict=True):
            variable.assign(value)
        relative, absolute = mismatch(keras_cv_components.decoder.predict_on_batch(nhwc(reference["latent"])),
                                      nhwc(reference["decoder"]))  # fmt: skip
    finally:
        for variable, value in zip(block.norm1.weights + block.norm2.weights, first + second, strict=True):
            variable.assign(value)
    assert relative > 10 * MAX_RELATIVE_L2 and absolute > MAX_ABSOLUTE


def test_the_reference_numerics_match_diffusers_closer(keras_cv_components, loaded_image_encoder, keras_cv_reference,
                                                       reference):  # fmt: skip
    """KerasCV's two known departures are the whole difference: with exact GELU and diffusers' GroupNorm epsilons the
    U-Net, decoder and encoder come to float32 rounding of diffusers' outputs; switching back restores KerasCV's."""
    components = Components(keras_cv_components.text_encoder, keras_cv_components.diffusion_model,
                            keras_cv_components.decoder, loaded_image_encoder)  # fmt: skip

    def outputs():
        return {
            "unet": unet_output(components, keras_cv_reference, reference),
            "decoder": components.decoder.predict_on_batch(nhwc(reference["latent"])),
            "encoder_mean": components.image_encoder.predict_on_batch(nhwc(reference["image"])),
        }

    keras_cv = outputs()
    try:
        assert set_numerics(components, REFERENCE) == 16 + 16 + 30 + 22  # GEGLUs, transformer norms, VAE norms
        closer = outputs()
    finally:
        set_numerics(components, KERAS_CV)
    for name, output in closer.items():
        relative, absolute = mismatch(output, nhwc(reference[name]))
        keras_cv_relative, _ = mismatch(keras_cv[name], nhwc(reference[name]))
        assert relative < keras_cv_relative and relative <= MAX_REFERENCE_RELATIVE_L2, (name, relative, absolute,
                                                                                         keras_cv_relative)  # fmt: skip
    again = outputs()
    assert all(np.array_equal(again[name], keras_cv[name]) for name in keras_cv)


@pytest.mark.parametrize("part", ["diffusion_model", "text_encoder", "decoder", "image_encoder"])
def test_the_diffusers_folder_converts_to_the_same_weights(sd14_checkpoint, keras_cv_components, loaded_image_encoder,
                                                           part):  # fmt: skip
    """Every variable converted from the (sharded) diffusers folder equals what the model holds from the LDM file,
    compared one tensor at a time (no second copy of a model)."""
    checkpoint = open_checkpoint(sd14_checkpoint["diffusers"], "diffusion_model")
    assert checkpoint.format_name == "diffusers" and checkpoint.parts() == ("diffusion_model", "text_encoder",
                                                                             "decoder", "image_encoder")  # fmt: skip
    model = loaded_image_encoder if part == "image_encoder" else getattr(keras_cv_components, part)
    source = checkpoint.sources[part]
    for assignment, key in checkpoint.plan(part, model):
        value = converted(source.store.get(key), assignment.kind, tuple(assignment.variable.shape))
        assert np.array_equal(value, np.array(assignment.variable)), key


def test_the_unet_folder_alone(sd14_checkpoint):
    checkpoint = open_checkpoint(sd14_checkpoint["diffusers"] / "unet", "diffusion_model")
    assert checkpoint.parts() == ("diffusion_model",) and checkpoint.format_name == "diffusers"
    assert (sd14_checkpoint["diffusers"] / "unet" / "diffusion_pytorch_model.safetensors.index.json").is_file()


def test_the_checked_in_shapes_are_diffusers_own(sd14_checkpoint, sd14_shapes):
    """tests/checkpoints/data/sd14_shapes.json (the coverage tests' source) is what diffusers and transformers save,
    and the LDM file holds exactly its renaming."""
    listing = json.loads((Path(__file__).resolve().parent / "data" / "sd14_shapes.json").read_text())
    folder = sd14_checkpoint["diffusers"]
    for part, shapes in listing.items():
        saved = {}
        for path in sorted((folder / part).glob("*.safetensors")):
            with safe_open(str(path), framework="numpy") as handle:
                saved.update({key: list(handle.get_slice(key).get_shape()) for key in handle.keys()})
        assert {key.removeprefix("text_model.") for key in saved} == set(shapes), part
        assert all(saved[key] == shapes[key.removeprefix("text_model.")] for key in saved), part
    with safe_open(str(sd14_checkpoint["ldm"]), framework="numpy") as handle:
        ldm = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    expected = sd14_layouts.ldm_state(sd14_shapes["unet"], sd14_shapes["vae"], sd14_shapes["text_encoder"])
    assert ldm == {key: value.shape for key, value in expected.items()}
