"""The settings the precision tests share, the chains they compare and how they measure image distance."""

import numpy as np
import tensorflow as tf
from keras_cv.src.models.stable_diffusion.constants import _UNCONDITIONAL_TOKENS

from sd_export import contract, samplers
from sd_export.decoder import decode
from sd_export.text_encoder import encode

SIZE = 128
STEPS = 2
GUIDANCE = 7.5
PROMPT = "a lighthouse on a cliff at dusk"
SEED = 42
UNCONDITIONAL = np.array([_UNCONDITIONAL_TOKENS], np.int32)


def tokens(tokenizer, prompt):
    ids = tokenizer.encode(prompt)
    return np.array([ids + [contract.END_TOKEN] * (contract.MAX_PROMPT_TOKENS - len(ids))], np.int32)


def served_chain(served, prompt_tokens, seeds):
    """text_encoder -> diffusion_model -> decoder in TF1 sessions, as the server runs them: (images, latent)."""
    contexts = served["text_encoder"].run("serving_default", {"tokens": prompt_tokens, "negative_tokens": UNCONDITIONAL})
    inputs = dict(contexts, num_steps=np.int32(STEPS), guidance_scale=np.float32(GUIDANCE))
    inputs["seed"] = np.array(seeds, np.int32)
    latent = served["diffusion_model"].run("serving_default", inputs)["latent"]
    return served["decoder"].run("serving_default", {"latent": latent})["images"], latent


def float32_chain(components, prompt_tokens, seeds):
    """The float32 export's own functions on the in-process float32 models (its SavedModels hold this graph; the
    export tests prove they give KerasCV's images): (images, latent)."""

    @tf.function
    def run():
        context, unconditional = encode(components.text_encoder, prompt_tokens, UNCONDITIONAL)
        noise = samplers.initial_noise(tf.constant(seeds, tf.int32), SIZE // 8, SIZE // 8)
        latent = samplers.sample(
            components.diffusion_model, noise, context, unconditional, STEPS, GUIDANCE, contract.DEFAULT_SAMPLER
        )
        return decode(components.decoder, latent), latent

    images, latent = run()
    return images.numpy(), latent.numpy()


def image_distance(actual, expected):
    """Mean and max absolute difference in uint8 levels, and PSNR in dB."""
    difference = actual.astype(np.float64) - expected.astype(np.float64)
    mse = np.mean(difference**2)
    return {
        "mean_level": float(np.mean(np.abs(difference))),
        "max_level": int(np.max(np.abs(difference))),
        "psnr_db": float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse)),
    }


def relative_error(actual, expected):
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))
