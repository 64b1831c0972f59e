"""diffusion_model: the two contexts of guidance -> the denoised latent, the whole sampling loop in one graph.

serving_default and from_noise run DDIM (KerasCV's sampler); with_sampler and with_sampler_from_noise take the
sampler by name (contract.SAMPLERS) and share one U-Net call per step across all of them (samplers.sample).
"""

import tensorflow as tf

from sd_export import checks, contract, samplers
from sd_export.servable import Servable, input_signature


class DiffusionModelServable(Servable):
    def __init__(self, unet, height, width, max_batch=contract.DEFAULT_MAX_BATCH):
        super().__init__(contract.DIFFUSION_MODEL, unet)
        latent_height, latent_width = height // contract.LATENT_DOWNSCALE, width // contract.LATENT_DOWNSCALE
        unet = shared_call(unet, latent_height, latent_width)

        def checked(context, unconditional_context, num_steps, guidance_scale, per_image, more):
            """The inputs (per_image: {name: tensor with a batch dimension}), once every check has passed."""
            named = {"context": context, "unconditional_context": unconditional_context, **per_image}
            return checks.after(
                checks.batch_checks(max_batch, named)
                + checks.guidance_checks(num_steps, guidance_scale)
                + checks.finite_checks("context", context)
                + checks.finite_checks("unconditional_context", unconditional_context)
                + more,
                context,
                unconditional_context,
                num_steps,
                guidance_scale,
                *per_image.values(),
            )

        def signature_of(name):
            return input_signature(contract.DIFFUSION_MODEL, name, height, width)

        def run(context, unconditional_context, num_steps, guidance_scale, noise, sampler, seed=None):
            latent = samplers.sample(
                unet, noise, context, unconditional_context, num_steps, guidance_scale, sampler, seed
            )
            return {"latent": latent}

        @tf.function(input_signature=signature_of(contract.DEFAULT_SIGNATURE))
        def serving_default(context, unconditional_context, num_steps, guidance_scale, seed):
            *guidance, seed = checked(
                context, unconditional_context, num_steps, guidance_scale, {"seed": seed}, checks.seed_checks(seed)
            )
            return run(*guidance, samplers.initial_noise(seed, latent_height, latent_width), contract.DEFAULT_SAMPLER)

        @tf.function(input_signature=signature_of(contract.FROM_NOISE_SIGNATURE))
        def from_noise(context, unconditional_context, num_steps, guidance_scale, initial_latent):
            more = checks.finite_checks("initial_latent", initial_latent)
            *guidance, latent = checked(
                context, unconditional_context, num_steps, guidance_scale, {"initial_latent": initial_latent}, more
            )
            return run(*guidance, latent, contract.DEFAULT_SAMPLER)

        @tf.function(input_signature=signature_of(contract.SAMPLER_SIGNATURE))
        def with_sampler(context, unconditional_context, num_steps, guidance_scale, seed, sampler):
            index, sampler_check = samplers.sampler_index(sampler, num_steps)
            more = checks.seed_checks(seed) + sampler_check
            *guidance, seed = checked(context, unconditional_context, num_steps, guidance_scale, {"seed": seed}, more)
            noise = samplers.initial_noise(seed, latent_height, latent_width)
            return run(*guidance, noise, checks.after(sampler_check, index)[0], seed)

        @tf.function(input_signature=signature_of(contract.SAMPLER_FROM_NOISE_SIGNATURE))
        def with_sampler_from_noise(context, unconditional_context, num_steps, guidance_scale, initial_latent, seed, sampler):
            index, sampler_check = samplers.sampler_index(sampler, num_steps)
            more = checks.finite_checks("initial_latent", initial_latent) + checks.seed_checks(seed) + sampler_check
            *guidance, latent, seed = checked(
                context, unconditional_context, num_steps, guidance_scale,
                {"initial_latent": initial_latent, "seed": seed}, more,
            )
            return run(*guidance, latent, checks.after(sampler_check, index)[0], seed)

        self.serve({
            contract.DEFAULT_SIGNATURE: serving_default,
            contract.FROM_NOISE_SIGNATURE: from_noise,
            contract.SAMPLER_SIGNATURE: with_sampler,
            contract.SAMPLER_FROM_NOISE_SIGNATURE: with_sampler_from_noise,
        })


def shared_call(unet, latent_height, latent_width):
    """The U-Net as one graph function that every signature calls, and that TensorFlow must not inline.

    Stored once in the SavedModel's function library (about 11,000 nodes) instead of inlined into each of the four
    signatures. At run time a TF1 session (TF Serving's) still instantiates it once per signature it runs, each with
    its own kernels and, with oneDNN's weight cache (TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1), their own reordered weights;
    so the client sends every seeded request to with_sampler and the warmup runs only that one (warmup.py; README, CPU
    speed)."""
    specs = [
        tf.TensorSpec([None, latent_height, latent_width, contract.LATENT_CHANNELS], tf.float32),
        tf.TensorSpec([None, contract.TIMESTEP_EMBEDDING_DIM], tf.float32),
        tf.TensorSpec([None, contract.MAX_PROMPT_TOKENS, contract.CONTEXT_DIM], tf.float32),
    ]

    @tf.function(input_signature=specs, experimental_attributes={"_noinline": True})
    def call(latent, timestep_embedding, context):
        return unet({"latent": latent, "timestep_embedding": timestep_embedding, "context": context}, training=False)

    def called(inputs, training=False):
        return call(inputs["latent"], inputs["timestep_embedding"], inputs["context"])

    return called
