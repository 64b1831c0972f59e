"""Our in-graph samplers against diffusers' schedulers, step by step, on the same stand-in noise prediction.

diffusers and torch run in their own process (diffusers_reference.py); this process only reads their latents."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import analytic
from sd_export import contract, samplers
from sd_export.diffusion_model import DiffusionModelServable
from sd_export.samplers.schedule import step_noise

SIZE = 128
LATENT = SIZE // contract.LATENT_DOWNSCALE
SEEDS = [7, 2024]
GUIDANCE = 7.5
STEP_COUNTS = (1, 2, 20, 50)
SAMPLERS = [name for name in contract.SAMPLERS if name != "DDIM"]  # diffusers' DDIM is not KerasCV's: see test_ddim
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def unet():
    return analytic.standin_unet(LATENT)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(5)
    shape = (len(SEEDS), contract.MAX_PROMPT_TOKENS, contract.CONTEXT_DIM)
    return {
        "noise": samplers.initial_noise(tf.constant(SEEDS), LATENT, LATENT).numpy(),
        "context": (0.3 + 0.1 * rng.standard_normal(shape)).astype(np.float32),
        "unconditional_context": (-0.2 + 0.1 * rng.standard_normal(shape)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def ours(unet, inputs):
    @tf.function
    def trajectory(num_steps, index):
        _, steps = samplers.sample(
            unet, inputs["noise"], inputs["context"], inputs["unconditional_context"], num_steps,
            tf.constant(GUIDANCE), index, tf.constant(SEEDS), trajectory=True,
        )
        return steps

    return {
        f"{name}/{n}": trajectory(tf.constant(n), tf.constant(contract.SAMPLERS.index(name))).numpy()
        for name in SAMPLERS
        for n in STEP_COUNTS
    }


@pytest.fixture(scope="module")
def theirs(inputs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("diffusers")
    cases = [f"{name}/{n}" for name in SAMPLERS for n in STEP_COUNTS]
    step_noises = {
        f"step_noise/{case}": np.stack(
            [step_noise(tf.constant(SEEDS), i, LATENT, LATENT).numpy() for i in range(int(case.rsplit("/")[1]))]
        )
        for case in cases
    }
    np.savez(folder / "in.npz", cases=np.array(cases), guidance_scale=GUIDANCE, **inputs, **step_noises)
    script = Path(__file__).with_name("diffusers_reference.py")
    subprocess.run([sys.executable, str(script), folder / "in.npz", folder / "out.npz"], check=True, timeout=300)
    return dict(np.load(folder / "out.npz"))


@pytest.mark.parametrize("num_steps", STEP_COUNTS)
@pytest.mark.parametrize("name", SAMPLERS)
def test_every_step_equals_diffusers(name, num_steps, ours, theirs):
    case = f"{name}/{num_steps}"
    assert ours[case].shape == theirs[case].shape == (num_steps, len(SEEDS), LATENT, LATENT, 4)
    for step, (mine, reference) in enumerate(zip(ours[case], theirs[case])):
        error = np.abs(mine - reference).max() / np.abs(reference).max()
        assert error <= TOLERANCE, f"{case}: step {step} differs from diffusers by {error:.2e} (relative)"


def test_samplers_differ(ours):
    """The comparison above would pass for samplers that all did the same thing: they do not."""
    finals = {name: ours[f"{name}/20"][-1] for name in SAMPLERS}
    for a in SAMPLERS:
        for b in SAMPLERS:
            if a < b:
                assert np.abs(finals[a] - finals[b]).max() > 1e-3, (a, b)


def test_exported_signature_runs_the_same_loop(unet, inputs, ours):
    """with_sampler_from_noise (the graph the model server runs) ends where the step-by-step loop ends."""
    signature = DiffusionModelServable(unet, SIZE, SIZE).signatures()[contract.SAMPLER_FROM_NOISE_SIGNATURE]
    for name in SAMPLERS:
        latent = signature(
            context=tf.constant(inputs["context"]),
            unconditional_context=tf.constant(inputs["unconditional_context"]),
            num_steps=tf.constant(20),
            guidance_scale=tf.constant(GUIDANCE),
            initial_latent=tf.constant(inputs["noise"]),
            seed=tf.constant(SEEDS),
            sampler=tf.constant(name.upper()),
        )["latent"].numpy()
        # Equal as floats are across graphs (the served U-Net is a non-inlined function: other fusions), 1e-5.
        np.testing.assert_allclose(latent, ours[f"{name}/20"][-1], rtol=1e-5, atol=1e-6, err_msg=name)
