"""text_to_image: prompt strings in, PNG bytes out; tokenizer, text encoder, sampling loop and decoder in
one graph.

The same functions as the three split servables, so its images equal the chain's for the same inputs and seeds. It
holds every weight of the three, so a server loads either it or the split models (text_to_image.config or
models.config), never both.
"""

import tensorflow as tf

from sd_export import checks, contract, samplers
from sd_export.decoder import decode, encode_png
from sd_export.servable import Servable, input_signature
from sd_export.text_encoder import encode


class TextToImageServable(Servable):
    def __init__(self, components, tokenizer, height, width, max_batch=contract.DEFAULT_MAX_BATCH):
        super().__init__(contract.TEXT_TO_IMAGE, components.text_encoder, components.diffusion_model, components.decoder)
        self.tokenizer = tokenizer  # tracked: its merge list is saved as an asset
        latent_height, latent_width = height // contract.LATENT_DOWNSCALE, width // contract.LATENT_DOWNSCALE

        def checked(prompt, negative_prompt, num_steps, guidance_scale, seed, more=()):
            return checks.after(
                checks.batch_checks(max_batch, {"prompt": prompt, "negative_prompt": negative_prompt, "seed": seed})
                + checks.guidance_checks(num_steps, guidance_scale)
                + checks.seed_checks(seed)
                + list(more),
                prompt,
                negative_prompt,
                num_steps,
                guidance_scale,
                seed,
            )

        def run(prompt, negative_prompt, num_steps, guidance_scale, seed, sampler):
            # An empty negative prompt tokenizes to KerasCV's unconditional row (start token, then padding).
            tokens = tokenizer.tokenize(prompt, "prompt")
            negative_tokens = tokenizer.tokenize(negative_prompt, "negative_prompt")
            context, unconditional_context = encode(components.text_encoder, tokens, negative_tokens)
            noise = samplers.initial_noise(seed, latent_height, latent_width)
            latent = samplers.sample(
                components.diffusion_model, noise, context, unconditional_context, num_steps, guidance_scale, sampler,
                seed,
            )
            return {"images_bytes": encode_png(decode(components.decoder, latent))}

        @tf.function(input_signature=input_signature(contract.TEXT_TO_IMAGE, contract.DEFAULT_SIGNATURE))
        def serving_default(prompt, negative_prompt, num_steps, guidance_scale, seed):
            inputs = checked(prompt, negative_prompt, num_steps, guidance_scale, seed)
            return run(*inputs, contract.DEFAULT_SAMPLER)

        @tf.function(input_signature=input_signature(contract.TEXT_TO_IMAGE, contract.SAMPLER_SIGNATURE))
        def with_sampler(prompt, negative_prompt, num_steps, guidance_scale, seed, sampler):
            index, sampler_check = samplers.sampler_index(sampler, num_steps)
            inputs = checked(prompt, negative_prompt, num_steps, guidance_scale, seed, sampler_check)
            return run(*inputs, checks.after(sampler_check, index)[0])

        self.serve({contract.DEFAULT_SIGNATURE: serving_default, contract.SAMPLER_SIGNATURE: with_sampler})
