"""The sampler input in the graph: names matched case-insensitively, anything else INVALID_ARGUMENT naming `sampler`;
step counts a sampler cannot take refused by name; DDIM through with_sampler is the old signature bit for bit."""

import numpy as np
import pytest
import tensorflow as tf

import analytic
from sd_export import contract
from sd_export.diffusion_model import DiffusionModelServable

SIZE = 128


@pytest.fixture(scope="module")
def signatures():
    return DiffusionModelServable(analytic.standin_unet(SIZE // 8), SIZE, SIZE).signatures()


def _inputs(num_steps=3):
    context = np.full((1, contract.MAX_PROMPT_TOKENS, contract.CONTEXT_DIM), 0.1, np.float32)
    return {
        "context": tf.constant(context),
        "unconditional_context": tf.constant(-context),
        "num_steps": tf.constant(num_steps),
        "guidance_scale": tf.constant(7.5),
        "seed": tf.constant([3]),
    }


def test_names_ignore_case(signatures):
    run = signatures[contract.SAMPLER_SIGNATURE]
    for name in contract.SAMPLERS:
        a = run(**_inputs(), sampler=tf.constant(name))["latent"].numpy()
        b = run(**_inputs(), sampler=tf.constant(name.swapcase()))["latent"].numpy()
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["LMS", "", "DDIM ", "dpm++2m"])
def test_unknown_sampler_is_invalid_argument(signatures, name):
    with pytest.raises(tf.errors.InvalidArgumentError, match="sampler must be one of DDIM, DPM\\+\\+ 2M, "):
        signatures[contract.SAMPLER_SIGNATURE](**_inputs(), sampler=tf.constant(name))


def test_too_many_steps_for_dpm_solver(signatures):
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_steps is more than sampler.*DPM\\+\\+ 2M.*999"):
        signatures[contract.SAMPLER_SIGNATURE](**_inputs(1000), sampler=tf.constant("DPM++ 2M"))
    latent = signatures[contract.SAMPLER_SIGNATURE](**_inputs(1000), sampler=tf.constant("DPM++ 2M Karras"))["latent"]
    assert np.isfinite(latent.numpy()).all()


def test_ddim_with_sampler_is_serving_default(signatures):
    old = signatures[contract.DEFAULT_SIGNATURE](**_inputs(5))["latent"].numpy()
    new = signatures[contract.SAMPLER_SIGNATURE](**_inputs(5), sampler=tf.constant("ddim"))["latent"].numpy()
    np.testing.assert_array_equal(new, old)
