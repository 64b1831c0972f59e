"""KerasCV 0.9's guided DDIM sampler (StableDiffusionBase.generate_image) as graph ops.

Every formula here follows keras_cv/src/models/stable_diffusion/stable_diffusion.py step for step, including the
order of float32 operations, so the exported loop reproduces KerasCV's images for the same weights and seed.
"""

import math

import tensorflow as tf
from keras_cv.src.models.stable_diffusion.constants import _ALPHAS_CUMPROD

from sd_export import contract

# KerasCV's seed handling: an int seed s becomes the stateless seed [s mod (2**31 - 2), 0] (keras.random.normal under
# the TensorFlow backend), so s = 2**31 - 2 draws the same noise as 0.
_SEED_MODULUS = 2**31 - 2


def timesteps(num_steps):
    """round(arange(n) * 999 / (n - 1)) with numpy's round-half-to-even; [0] for n = 1."""
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


def timestep_embedding(timestep, batch, dim=contract.TIMESTEP_EMBEDDING_DIM, max_period=10000):
    half = dim // 2
    freqs = tf.exp(-math.log(max_period) * tf.cast(tf.range(half), tf.float32) / half)
    args = tf.reshape(tf.cast(timestep, tf.float32), [1]) * freqs
    embedding = tf.reshape(tf.concat([tf.cos(args), tf.sin(args)], axis=0), [1, -1])
    return tf.repeat(embedding, batch, axis=0)


def initial_noise(seed, latent_height, latent_width):
    """Image i starts from the noise KerasCV draws for a batch of one with seed[i]."""

    def draw(one_seed):
        stateless_seed = tf.stack([tf.math.floormod(one_seed, _SEED_MODULUS), 0])
        shape = [1, latent_height, latent_width, contract.LATENT_CHANNELS]
        return tf.random.stateless_normal(shape, seed=stateless_seed, dtype=tf.float32)[0]

    noise = tf.map_fn(draw, seed, fn_output_signature=tf.TensorSpec(None, tf.float32))
    return tf.ensure_shape(noise, [None, latent_height, latent_width, contract.LATENT_CHANNELS])


def sample(unet, latent, context, unconditional_context, num_steps, guidance_scale):
    """The guided DDIM loop, a graph while-loop with both guidance passes batched into one U-Net call of 2B rows."""
    batch = tf.shape(latent)[0]
    steps = timesteps(num_steps)
    alpha, alpha_prev = alphas(steps)
    both_contexts = tf.concat([unconditional_context, context], axis=0)

    def step(index, latent):
        embedding = timestep_embedding(steps[index], 2 * batch)
        inputs = {"latent": tf.concat([latent, latent], axis=0), "timestep_embedding": embedding, "context": both_contexts}
        # A half-precision U-Net casts its inputs itself (Keras' autocast) and answers in its own dtype: the
        # guidance and DDIM arithmetic stay in float32.
        both = tf.cast(unet(inputs, training=False), tf.float32)
        unconditional, conditional = both[:batch], both[batch:]
        noise = unconditional + guidance_scale * (conditional - unconditional)
        a_t, a_prev = alpha[index], alpha_prev[index]
        pred_x0 = (latent - _f32(tf.sqrt(1.0 - a_t)) * noise) / _f32(tf.sqrt(a_t))
        latent = noise * _f32(tf.sqrt(1.0 - a_prev)) + _f32(tf.sqrt(a_prev)) * pred_x0
        return index - 1, tf.ensure_shape(latent, latent_shape)

    latent_shape = latent.shape
    _, latent = tf.while_loop(lambda index, _: index >= 0, step, [num_steps - 1, latent])
    return latent


def _f32(value):
    return tf.cast(value, tf.float32)
