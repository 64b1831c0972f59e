"""Euler a (ancestral): an Euler step down to sigma_down, then fresh noise of sigma_up, so that sigma_down^2 +
sigma_up^2 is the next sigma^2, as diffusers' EulerAncestralDiscreteScheduler does (same schedule as Euler).

The noise of step i for image b is drawn statelessly from seed[b] and i (schedule.step_noise): image b of a batch
equals image b made alone, and a seed makes the same image again.
"""

import tensorflow as tf

from sd_export.samplers import euler
from sd_export.samplers.schedule import Sampler


def step(schedule, index, latent, noise, previous, draw_noise):
    sigma, slope = euler.derivative(schedule, index, latent, noise)
    sigma_to = schedule.tables["sigmas"][index + 1]
    sigma_up = tf.pow(sigma_to**2 * (sigma**2 - sigma_to**2) / sigma**2, 0.5)
    sigma_down = tf.pow(sigma_to**2 - sigma_up**2, 0.5)
    latent = latent + slope * (sigma_down - sigma)
    return latent + draw_noise() * sigma_up, previous


EULER_ANCESTRAL = Sampler("Euler a", euler.schedule, step)
