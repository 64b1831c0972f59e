"""What every sampler shares: SD 1.x's noise schedule, the U-Net's timestep embedding, seeded noise, and the interface
a sampler implements.

SD 1.x was trained on 1000 timesteps with "scaled linear" betas, sqrt(beta) linear from sqrt(0.00085) to
sqrt(0.012). KerasCV ships the resulting alphas_cumprod as a table; diffusers computes the same table in float32
(torch.linspace, torch.cumprod) and derives its noise levels sigma = sqrt((1 - alphas_cumprod) / alphas_cumprod).
The samplers other than DDIM walk that sigma table the way diffusers' schedulers do (see each sampler's file).
"""

import dataclasses
import math
from typing import Callable

import numpy as np
import tensorflow as tf
from keras_cv.src.models.stable_diffusion.constants import _ALPHAS_CUMPROD

from sd_export import contract

# KerasCV's seed handling: an int seed s becomes the stateless seed [s mod (2**31 - 2), 0] (keras.random.normal under
# the TensorFlow backend), so s = 2**31 - 2 draws the same noise as 0.
_SEED_MODULUS = 2**31 - 2

ALPHAS_CUMPROD = np.asarray(_ALPHAS_CUMPROD, np.float32)
# diffusers' sigma table, float32 as torch computes it: sigma[t] for t = 0..999, increasing.
SIGMAS = np.sqrt((1.0 - ALPHAS_CUMPROD) / ALPHAS_CUMPROD).astype(np.float32)
# np.log of the float32 table stays float32, as in diffusers' _sigma_to_t.
LOG_SIGMAS = np.log(SIGMAS)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """One sampler's plan for num_steps steps, as tensors.

    timesteps: float32 [n], what the U-Net is told at each step (its timestep embedding).
    input_scales: float32 [n], the U-Net sees latent * input_scales[i] (Euler's 1/sqrt(sigma^2 + 1); 1 elsewhere).
    initial_scale: float32 [], the start latent is unit noise * initial_scale.
    tables: whatever the sampler's update reads (sigmas, alphas), by name.
    """

    timesteps: tf.Tensor
    input_scales: tf.Tensor
    initial_scale: tf.Tensor
    tables: dict


@dataclasses.dataclass(frozen=True)
class Sampler:
    """A member of the family: its name and two plain functions.

    schedule(num_steps) -> Schedule
    step(schedule, index, latent, noise_prediction, previous, draw_noise) -> (latent, previous)
        index counts up from 0; noise_prediction is the guided epsilon (float32); previous is the sampler's carried
        state (DPM++ 2M's last data prediction), the latent's shape; draw_noise() gives this step's per-image noise.
    """

    name: str
    schedule: Callable
    step: Callable

    @property
    def max_steps(self):
        return contract.SAMPLER_MAX_STEPS.get(self.name, contract.MAX_NUM_STEPS)


def unit_scales(num_steps):
    return tf.ones([num_steps], tf.float32)


def linspace(stop, num):
    """np.linspace(0, stop, num) in float64: i * (stop / (num - 1)), the last value exactly stop; [0] for num = 1."""
    ramp = tf.cast(tf.range(num), tf.float64) * (stop / tf.cast(tf.maximum(num - 1, 1), tf.float64))
    return tf.where(tf.range(num) == num - 1, tf.where(num > 1, tf.cast(stop, tf.float64), 0.0), ramp)


def sigma_at(timesteps):
    """np.interp(timesteps, arange(1000), SIGMAS) in float64 (diffusers' sigmas at fractional timesteps)."""
    table = tf.constant(SIGMAS.astype(np.float64))
    t = tf.cast(timesteps, tf.float64)
    low = tf.clip_by_value(tf.floor(t), 0.0, float(contract.TRAIN_TIMESTEPS - 2))
    low_index = tf.cast(low, tf.int32)
    below, above = tf.gather(table, low_index), tf.gather(table, low_index + 1)
    interpolated = (above - below) * (t - low) + below
    return tf.where(t >= contract.TRAIN_TIMESTEPS - 1, table[-1], tf.where(t == low, below, interpolated))


def timestep_embedding(timestep, batch, dim=contract.TIMESTEP_EMBEDDING_DIM, max_period=10000):
    """KerasCV's sinusoidal embedding of one (possibly fractional) timestep, repeated for the batch."""
    half = dim // 2
    freqs = tf.exp(-math.log(max_period) * tf.cast(tf.range(half), tf.float32) / half)
    args = tf.reshape(tf.cast(timestep, tf.float32), [1]) * freqs
    embedding = tf.reshape(tf.concat([tf.cos(args), tf.sin(args)], axis=0), [1, -1])
    return tf.repeat(embedding, batch, axis=0)


def _per_image_normal(seed, counter, latent_height, latent_width):
    def draw(one_seed):
        stateless_seed = tf.stack([tf.math.floormod(one_seed, _SEED_MODULUS), counter])
        shape = [1, latent_height, latent_width, contract.LATENT_CHANNELS]
        return tf.random.stateless_normal(shape, seed=stateless_seed, dtype=tf.float32)[0]

    noise = tf.map_fn(draw, seed, fn_output_signature=tf.TensorSpec(None, tf.float32))
    return tf.ensure_shape(noise, [None, latent_height, latent_width, contract.LATENT_CHANNELS])


def initial_noise(seed, latent_height, latent_width):
    """Image i starts from the noise KerasCV draws for a batch of one with seed[i]."""
    return _per_image_normal(seed, 0, latent_height, latent_width)


def step_noise(seed, index, latent_height, latent_width):
    """The noise an ancestral sampler adds at step `index` (from 0) to image i: drawn statelessly from seed[i] and the
    step (stateless seed [seed[i], index + 1]; the start noise uses counter 0), so image i of a batch gets the noise
    it gets alone."""
    return _per_image_normal(seed, tf.cast(index, tf.int32) + 1, latent_height, latent_width)
