"""DDIM, the default: KerasCV 0.9's guided sampler (StableDiffusionBase.generate_image) as graph ops.

Every formula follows keras_cv/src/models/stable_diffusion/stable_diffusion.py step for step, including the order of
float32 operations, so the exported loop reproduces KerasCV's images for the same weights and seed. KerasCV's
timesteps are its own: round(arange(n) * 999 / (n - 1)) (not diffusers' DDIMScheduler spacing).
"""

import tensorflow as tf
from keras_cv.src.models.stable_diffusion.constants import _ALPHAS_CUMPROD

from sd_export import contract
from sd_export.samplers.schedule import Sampler, Schedule, unit_scales


def timesteps(num_steps):
    """round(arange(n) * 999 / (n - 1)) with numpy's round-half-to-even, ascending; [0] for n = 1."""
    steps = tf.cast(num_steps, tf.float64)
    last = float(contract.TRAIN_TIMESTEPS - 1)
    ratio = tf.where(num_steps > 1, last / tf.maximum(steps - 1.0, 1.0), float(contract.TRAIN_TIMESTEPS))
    return tf.cast(tf.round(tf.cast(tf.range(num_steps), tf.float64) * ratio), tf.int32)


def alphas(steps):
    """alphas_cumprod at each timestep, and the previous step's (1.0 before the first), in float64 like KerasCV."""
    table = tf.constant(_ALPHAS_CUMPROD, dtype=tf.float64)
    current = tf.gather(table, steps)
    previous = tf.concat([tf.ones([1], tf.float64), current[:-1]], axis=0)
    return current, previous


def schedule(num_steps):
    steps = timesteps(num_steps)
    alpha, alpha_prev = alphas(steps)
    # KerasCV walks its ascending arrays from the end; the loop counts up, so they are stored reversed.
    return Schedule(
        timesteps=tf.cast(tf.reverse(steps, [0]), tf.float32),
        input_scales=unit_scales(num_steps),
        initial_scale=tf.constant(1.0, tf.float32),
        tables={"alpha": tf.reverse(alpha, [0]), "alpha_prev": tf.reverse(alpha_prev, [0])},
    )


def step(schedule, index, latent, noise, previous, draw_noise):
    a_t, a_prev = schedule.tables["alpha"][index], schedule.tables["alpha_prev"][index]
    pred_x0 = (latent - _f32(tf.sqrt(1.0 - a_t)) * noise) / _f32(tf.sqrt(a_t))
    latent = noise * _f32(tf.sqrt(1.0 - a_prev)) + _f32(tf.sqrt(a_prev)) * pred_x0
    return latent, previous


def _f32(value):
    return tf.cast(value, tf.float32)


DDIM = Sampler("DDIM", schedule, step)
