"""Bad inputs fail inside the graph with INVALID_ARGUMENT naming the input, never with a crash or a garbage image."""

import numpy as np
import pytest
import tensorflow as tf
from sd_export import contract

LATENT = (16, 16, 4)


def contexts(batch):
    return np.zeros((batch, 77, 768), np.float32)


def diffusion_inputs(batch=1, **overrides):
    inputs = {
        "context": contexts(batch),
        "unconditional_context": contexts(batch),
        "num_steps": np.int32(2),
        "guidance_scale": np.float32(7.5),
        "seed": np.arange(batch, dtype=np.int32),
    }
    inputs.update(overrides)
    return inputs


def tokens(batch, fill=contract.END_TOKEN):
    return np.full((batch, 77), fill, np.int32)


CASES = [
    ("diffusion_model", "serving_default", diffusion_inputs(num_steps=np.int32(0)), "num_steps"),
    ("diffusion_model", "serving_default", diffusion_inputs(num_steps=np.int32(1001)), "num_steps"),
    ("diffusion_model", "serving_default", diffusion_inputs(num_steps=np.int32(-5)), "num_steps"),
    ("diffusion_model", "serving_default", diffusion_inputs(guidance_scale=np.float32("nan")), "guidance_scale"),
    ("diffusion_model", "serving_default", diffusion_inputs(guidance_scale=np.float32("inf")), "guidance_scale"),
    ("diffusion_model", "serving_default", diffusion_inputs(seed=np.array([-1], np.int32)), "seed"),
    ("diffusion_model", "serving_default", diffusion_inputs(seed=np.array([2**31 - 1], np.int32)), "seed"),
    ("diffusion_model", "serving_default", diffusion_inputs(seed=np.array([1, 2], np.int32)), "seed"),
    ("diffusion_model", "serving_default", diffusion_inputs(unconditional_context=contexts(2)), "unconditional_context"),
    ("diffusion_model", "serving_default", diffusion_inputs(batch=0), "empty batch"),
    ("diffusion_model", "serving_default", diffusion_inputs(batch=9), "more than 8 rows"),
    (
        "diffusion_model",
        "serving_default",
        diffusion_inputs(context=np.full((1, 77, 768), np.nan, np.float32)),
        "context contains NaN",
    ),
    (
        "diffusion_model",
        "from_noise",
        {**{k: v for k, v in diffusion_inputs().items() if k != "seed"}, "initial_latent": np.full((1, *LATENT), np.inf, np.float32)},
        "initial_latent",
    ),
    (
        "diffusion_model",
        "from_noise",
        {**{k: v for k, v in diffusion_inputs().items() if k != "seed"}, "initial_latent": np.zeros((3, *LATENT), np.float32)},
        "initial_latent",
    ),
    ("text_encoder", "serving_default", {"tokens": tokens(1), "negative_tokens": tokens(2)}, "negative_tokens"),
    ("text_encoder", "serving_default", {"tokens": tokens(1, 49408), "negative_tokens": tokens(1)}, "^(?s:.*)[^_]tokens holds ids"),
    ("text_encoder", "serving_default", {"tokens": tokens(1), "negative_tokens": tokens(1, -1)}, "negative_tokens holds ids"),
    ("text_encoder", "serving_default", {"tokens": tokens(0), "negative_tokens": tokens(0)}, "empty batch"),
    ("decoder", "serving_default", {"latent": np.full((1, *LATENT), np.nan, np.float32)}, "latent contains NaN"),
    ("decoder", "png", {"latent": np.zeros((9, *LATENT), np.float32)}, "more than 8 rows"),
]


@pytest.mark.parametrize("model, signature, inputs, named", CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_bad_input_is_invalid_argument(standin_served, model, signature, inputs, named):
    with pytest.raises(tf.errors.InvalidArgumentError, match=named):
        standin_served[model].run(signature, inputs)


def test_good_request_after_bad_ones_still_runs(standin_served):
    latent = standin_served["diffusion_model"].run("serving_default", diffusion_inputs(batch=2))["latent"]
    assert latent.shape == (2, *LATENT) and np.isfinite(latent).all()


def test_largest_seed_is_accepted(standin_served):
    latent = standin_served["diffusion_model"].run("serving_default", diffusion_inputs(seed=np.array([contract.MAX_SEED], np.int32)))
    assert np.isfinite(latent["latent"]).all()
