"""Euler: the first-order Euler method on the probability-flow ODE in sigma (Karras et al., 2022, Algorithm 1 with
no churn), as diffusers' EulerDiscreteScheduler builds it from SD 1.x's scheduler config.

timestep_spacing="linspace" (diffusers' default, which SD 1.x's config does not override; its steps_offset=1 only
applies to "leading"): timesteps linspace(0, 999, n) descending, fractional; sigmas interpolated linearly from SD's
table at them, then 0. The latent lives in the sigma scale: the start noise is multiplied by the largest sigma, and
the U-Net sees latent / sqrt(sigma^2 + 1).
"""

import tensorflow as tf

from sd_export import contract
from sd_export.samplers.schedule import Sampler, Schedule, linspace, sigma_at


def schedule(num_steps):
    timesteps = tf.reverse(tf.cast(linspace(float(contract.TRAIN_TIMESTEPS - 1), num_steps), tf.float32), [0])
    sigmas = tf.cast(sigma_at(timesteps), tf.float32)
    return Schedule(
        timesteps=timesteps,
        input_scales=1.0 / tf.pow(sigmas**2 + 1.0, 0.5),
        initial_scale=tf.reduce_max(sigmas),
        tables={"sigmas": tf.concat([sigmas, tf.zeros([1], tf.float32)], axis=0)},
    )


def derivative(schedule, index, latent, noise):
    """(sigma, dx/dsigma): the ODE's slope from the guided noise prediction."""
    sigma = schedule.tables["sigmas"][index]
    denoised = latent - sigma * noise
    return sigma, (latent - denoised) / sigma


def step(schedule, index, latent, noise, previous, draw_noise):
    sigma, slope = derivative(schedule, index, latent, noise)
    return latent + slope * (schedule.tables["sigmas"][index + 1] - sigma), previous


EULER = Sampler("Euler", schedule, step)
