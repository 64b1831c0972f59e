"""diffusion_model: the two contexts of guidance -> the denoised latent, the whole DDIM loop in one graph."""

import tensorflow as tf

from sd_export import checks, contract, ddim
from sd_export.servable import Servable, input_signature


class DiffusionModelServable(Servable):
    def __init__(self, unet, height, width, max_batch=contract.DEFAULT_MAX_BATCH):
        super().__init__(contract.DIFFUSION_MODEL, unet)
        latent_height, latent_width = height // contract.LATENT_DOWNSCALE, width // contract.LATENT_DOWNSCALE
        unet = shared_call(unet, latent_height, latent_width)

        def checked(context, unconditional_context, num_steps, guidance_scale, per_image_name, per_image, more):
            named = {"context": context, "unconditional_context": unconditional_context, per_image_name: per_image}
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
                per_image,
            )

        def signature_of(name):
            return input_signature(contract.DIFFUSION_MODEL, name, height, width)

        @tf.function(input_signature=signature_of(contract.DEFAULT_SIGNATURE))
        def serving_default(context, unconditional_context, num_steps, guidance_scale, seed):
            context, unconditional_context, num_steps, guidance_scale, seed = checked(
                context, unconditional_context, num_steps, guidance_scale, "seed", seed, checks.seed_checks(seed)
            )
            latent = ddim.initial_noise(seed, latent_height, latent_width)
            return {"latent": ddim.sample(unet, latent, context, unconditional_context, num_steps, guidance_scale)}

        @tf.function(input_signature=signature_of(contract.FROM_NOISE_SIGNATURE))
        def from_noise(context, unconditional_context, num_steps, guidance_scale, initial_latent):
            more = checks.finite_checks("initial_latent", initial_latent)
            context, unconditional_context, num_steps, guidance_scale, latent = checked(
                context, unconditional_context, num_steps, guidance_scale, "initial_latent", initial_latent, more
            )
            return {"latent": ddim.sample(unet, latent, context, unconditional_context, num_steps, guidance_scale)}

        self._serving_default = serving_default
        self._from_noise = from_noise

    def signatures(self):
        return {
            contract.DEFAULT_SIGNATURE: self._serving_default.get_concrete_function(),
            contract.FROM_NOISE_SIGNATURE: self._from_noise.get_concrete_function(),
        }


def shared_call(unet, latent_height, latent_width):
    """The U-Net as one graph function that both signatures call, and that TensorFlow must not inline.

    Inlined, every signature gets its own copy of the U-Net's kernels, and with oneDNN's weight cache
    (TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1) each copy keeps its own reordered weights: two signatures, two caches. Called
    as one function, the runtime instantiates it once, so the kernels and their cache exist once (README, CPU
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
