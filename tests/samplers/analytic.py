"""Noise predictions with a known formula, as Keras models with the U-Net's input names (latent, timestep_embedding,
context), so they run through the exported sampling loop in place of the U-Net.

- `standin_unet`: a fixed smooth function of latent, timestep and context, written identically in torch by
  diffusers_reference.py (the diffusers parity test):
      a = cos(t * f),  f = 10000 ** (-100 / 160)   (component 100 of KerasCV's timestep embedding)
      c = mean of the context row
      eps = tanh(x) * (0.8 + 0.15 * a) + 0.05 * x + 0.1 * c
- `mixture_unet`: the exact noise prediction for data whose every coordinate is drawn from a 1-D Gaussian mixture
  (the convergence test): under x_t = sqrt(alpha) x0 + sqrt(1 - alpha) e the marginal is again a mixture, and
  eps = -sqrt(1 - alpha) * d/dx log p_t(x).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from sd_export import contract
from sd_export.samplers.schedule import SIGMAS, sigma_at

EMBEDDING_INDEX = 100
_HALF = contract.TIMESTEP_EMBEDDING_DIM // 2
# The component the mixture decodes the timestep from: t * its frequency stays below pi up to t = 999 (1.78).
DECODING_INDEX = 110
DECODING_FREQUENCY = math.exp(-math.log(10000) * DECODING_INDEX / _HALF)

# The mixture: weights, means, standard deviations (of x0, per coordinate).
MIXTURE = (np.array([0.3, 0.5, 0.2]), np.array([-1.5, 0.3, 1.8]), np.array([0.8, 0.6, 0.9]))


def _inputs(latent_size):
    latent = keras.Input((latent_size, latent_size, contract.LATENT_CHANNELS), name="latent")
    embedding = keras.Input((contract.TIMESTEP_EMBEDDING_DIM,), name="timestep_embedding")
    context = keras.Input((contract.MAX_PROMPT_TOKENS, contract.CONTEXT_DIM), name="context")
    return latent, embedding, context


def standin_unet(latent_size):
    def noise(tensors):
        x, embedding, context = tensors
        a = embedding[:, EMBEDDING_INDEX][:, None, None, None]
        c = tf.reduce_mean(context, axis=[1, 2])[:, None, None, None]
        return tf.tanh(x) * (0.8 + 0.15 * a) + 0.05 * x + 0.1 * c

    latent, embedding, context = _inputs(latent_size)
    return keras.Model([latent, embedding, context], keras.layers.Lambda(noise)([latent, embedding, context]))


def timestep_from_embedding(embedding):
    """The timestep back from one frequency's cos and sin (KerasCV's embedding is [cos(t f_k)..., sin(t f_k)...])."""
    angle = tf.atan2(embedding[:, DECODING_INDEX + _HALF], embedding[:, DECODING_INDEX])
    return tf.maximum(angle, 0.0) / DECODING_FREQUENCY


def mixture_noise(x, alpha):
    """Exact eps for the mixture at noise level alpha (alphas_cumprod), float64 numpy or tensors."""
    weights, means, stds = (tf.constant(v, x.dtype) for v in MIXTURE)
    x = x[..., None]
    alpha = alpha[..., None]
    mean = tf.sqrt(alpha) * means
    variance = alpha * stds**2 + (1.0 - alpha)
    log_density = tf.math.log(weights) - 0.5 * tf.math.log(variance) - 0.5 * (x - mean) ** 2 / variance
    responsibility = tf.nn.softmax(log_density, axis=-1)
    score = tf.reduce_sum(responsibility * (mean - x) / variance, axis=-1)
    return -tf.sqrt(1.0 - alpha[..., 0]) * score


def mixture_unet(latent_size):
    """The mixture's eps at the sigma diffusers' samplers assign to the (fractional) timestep: SD's sigma table
    interpolated linearly, as EulerDiscreteScheduler interpolates it."""

    def noise(tensors):
        x, embedding, _ = tensors
        sigma = sigma_at(timestep_from_embedding(embedding))
        alpha = (1.0 / (1.0 + sigma**2))[:, None, None, None]
        return tf.cast(mixture_noise(tf.cast(x, tf.float64), alpha + tf.zeros_like(tf.cast(x, tf.float64))), tf.float32)

    latent, embedding, context = _inputs(latent_size)
    return keras.Model([latent, embedding, context], keras.layers.Lambda(noise)([latent, embedding, context]))


def mixture_ode_solution(noise, start_scale, steps=4000):
    """The probability-flow ODE's end point, to any accuracy: classical RK4 in float64 on dx/dsigma = eps(x / sqrt(1
    + sigma^2), sigma) (x in the sigma scale) from start_scale * noise at SD's largest sigma (t = 999) down to its
    smallest (t = 0), steps uniform in log sigma, then the data prediction there: every sampler's last step jumps from
    that sigma to 0 the same way, so this is where they all converge as their step count grows."""
    log_sigmas = np.linspace(np.log(float(SIGMAS[-1])), np.log(float(SIGMAS[0])), steps + 1)
    sigmas = tf.constant(np.exp(log_sigmas))

    def slope(x, sigma):
        return mixture_noise(x / tf.sqrt(1.0 + sigma**2), tf.fill(tf.shape(x), 1.0 / (1.0 + sigma**2)))

    @tf.function
    def integrate(x):
        def rk4(i, x):
            s0, s1 = sigmas[i], sigmas[i + 1]
            h = s1 - s0
            k1 = slope(x, s0)
            k2 = slope(x + 0.5 * h * k1, s0 + 0.5 * h)
            k3 = slope(x + 0.5 * h * k2, s0 + 0.5 * h)
            k4 = slope(x + h * k3, s1)
            return i + 1, x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)

        _, x = tf.while_loop(lambda i, _: i < steps, rk4, [0, x])
        return x - sigmas[-1] * slope(x, sigmas[-1])

    return integrate(tf.constant(noise.astype(np.float64) * start_scale)).numpy()
