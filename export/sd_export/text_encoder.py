"""text_encoder: CLIP token ids of the prompt and of the negative prompt -> the two contexts of guidance."""

import tensorflow as tf

from sd_export import checks, contract
from sd_export.servable import Servable, input_signature


class TextEncoderServable(Servable):
    def __init__(self, text_encoder, max_batch=contract.DEFAULT_MAX_BATCH):
        super().__init__(contract.TEXT_ENCODER, text_encoder)

        @tf.function(input_signature=input_signature(contract.TEXT_ENCODER, contract.DEFAULT_SIGNATURE))
        def serving_default(tokens, negative_tokens):
            tokens, negative_tokens = checks.after(
                checks.batch_checks(max_batch, {"tokens": tokens, "negative_tokens": negative_tokens})
                + checks.token_checks("tokens", tokens, contract.VOCAB_SIZE)
                + checks.token_checks("negative_tokens", negative_tokens, contract.VOCAB_SIZE),
                tokens,
                negative_tokens,
            )
            context, unconditional_context = encode(text_encoder, tokens, negative_tokens)
            return {"context": context, "unconditional_context": unconditional_context}

        self.serve({contract.DEFAULT_SIGNATURE: serving_default})


def encode(text_encoder, tokens, negative_tokens):
    """(context, unconditional_context) in one encoder call; no squeeze, so every row stays its own.

    The contexts leave in float32 whatever the export's precision (the contract's dtype; exact for half values)."""
    both = tf.concat([tokens, negative_tokens], axis=0)
    positions = tf.broadcast_to(tf.range(contract.MAX_PROMPT_TOKENS, dtype=tf.int32), tf.shape(both))
    encoded = tf.cast(text_encoder({"tokens": both, "positions": positions}, training=False), tf.float32)
    return tf.split(encoded, 2, axis=0)
