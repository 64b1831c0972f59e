"""decoder: latent -> uint8 images (KerasCV's post-processing), or PNG bytes encoded in the graph."""

import tensorflow as tf

from sd_export import checks, contract
from sd_export.servable import Servable, input_signature


class DecoderServable(Servable):
    def __init__(self, decoder, height, width, max_batch=contract.DEFAULT_MAX_BATCH):
        super().__init__(contract.DECODER, decoder)

        def images(latent):
            (latent,) = checks.after(
                checks.batch_checks(max_batch, {"latent": latent}) + checks.finite_checks("latent", latent), latent
            )
            return decode(decoder, latent)

        @tf.function(input_signature=input_signature(contract.DECODER, contract.DEFAULT_SIGNATURE, height, width))
        def serving_default(latent):
            return {"images": images(latent)}

        @tf.function(input_signature=input_signature(contract.DECODER, contract.PNG_SIGNATURE, height, width))
        def png(latent):
            return {"images_bytes": encode_png(images(latent))}

        self.serve({contract.DEFAULT_SIGNATURE: serving_default, contract.PNG_SIGNATURE: png})


def decode(decoder, latent):
    """KerasCV's generate_image: decoded x -> ((x + 1) / 2) * 255, clipped to [0, 255], truncated to uint8.

    One image at a time (a loop that runs one iteration at once): at 512² the decoder's activations take about 1 GB
    an image in any precision, since GroupNormalization computes in float32 under a mixed policy, so a batch of 8
    decoded at once would hold 8 GB (README, Sizing a server for batches). Rows are independent, so each image is the
    one a batch of one gives. The post-processing runs in float32 whatever the export's precision."""

    def one_image(row):
        decoded = tf.cast(decoder(row[None], training=False), tf.float32)[0]
        return tf.cast(tf.clip_by_value(((decoded + 1) / 2) * 255, 0, 255), tf.uint8)

    return tf.map_fn(one_image, latent, fn_output_signature=tf.uint8, parallel_iterations=1)


def encode_png(images):
    return tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.TensorSpec([], tf.string))
