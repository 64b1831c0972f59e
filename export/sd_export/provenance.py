"""What a version records about how it was made, readable through TF Serving's own API.

Clients reach only the server, and TF Serving's model metadata carries signatures, nothing else. So diffusion_model
and text_to_image get a small `provenance` signature: a batch of key strings in, their value strings out (an unknown
key is INVALID_ARGUMENT naming it). It has a batch dimension like every other input, so it also works in REST's row
form. The same record is written to assets.extra/sd_export.json in every model's version folder, for people and
tools that read the repository.
"""

import tensorflow as tf

from sd_export import checks, contract
from sd_export.servable import input_signature


def provenance_function(model, values):
    """The `provenance` signature's tf.function for `model`, answering from `values` ({key: str} for contract.PROVENANCE_KEYS)."""
    keys = tf.constant(list(contract.PROVENANCE_KEYS))
    answers = tf.constant([values.get(key, "") for key in contract.PROVENANCE_KEYS])
    known = ", ".join(contract.PROVENANCE_KEYS)

    @tf.function(input_signature=input_signature(model, contract.PROVENANCE_SIGNATURE))
    def provenance(key):
        matches = tf.equal(key[:, None], keys[None, :])
        (matches,) = checks.after(
            [
                checks.require(checks.batch_size(key) >= 1, "key has an empty batch: send at least one key"),
                checks.require(tf.reduce_all(tf.reduce_any(matches, axis=1)), f"key must be one of {known}, got", key),
            ],
            matches,
        )
        return {"value": tf.gather(answers, tf.argmax(tf.cast(matches, tf.int32), axis=1))}

    return provenance
