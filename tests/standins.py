"""Small stand-in Keras models with the input names and shapes of KerasCV's SD components.

Protocol, server and client tests export these through the real exporter, so they keep the signature contract while
building in a second and loading in megabytes. Parity and end-to-end tests use the real KerasCV architectures.
"""

import keras

from sd_export import contract
from sd_export.weights import Components, dtype_policy

_WIDTH = 8
# What each exported stand-in version records (sd_export.provenance): a different checkpoint hash per version.
PROVENANCE = {
    version: {"precision": "float32", "source_format": "keras_h5", "source_sha256": digit * 64}
    for version, digit in ((1, "1"), (2, "2"))
}


def text_encoder():
    tokens = keras.Input((contract.MAX_PROMPT_TOKENS,), dtype="int32", name="tokens")
    positions = keras.Input((contract.MAX_PROMPT_TOKENS,), dtype="int32", name="positions")
    x = keras.layers.Embedding(contract.VOCAB_SIZE, _WIDTH)(tokens)
    x = x + keras.layers.Embedding(contract.MAX_PROMPT_TOKENS, _WIDTH)(positions)
    x = keras.layers.Dense(contract.CONTEXT_DIM)(keras.layers.Dense(_WIDTH, activation="tanh")(x))
    return keras.Model([tokens, positions], x, name="standin_text_encoder")


def diffusion_model(height, width):
    latent = keras.Input(
        (height // contract.LATENT_DOWNSCALE, width // contract.LATENT_DOWNSCALE, contract.LATENT_CHANNELS),
        name="latent",
    )
    embedding = keras.Input((contract.TIMESTEP_EMBEDDING_DIM,), name="timestep_embedding")
    context = keras.Input((contract.MAX_PROMPT_TOKENS, contract.CONTEXT_DIM), name="context")
    text = keras.layers.Dense(contract.LATENT_CHANNELS)(keras.layers.GlobalAveragePooling1D()(context))
    time = keras.layers.Dense(contract.LATENT_CHANNELS)(embedding)
    x = keras.layers.Conv2D(_WIDTH, 3, padding="same", activation="tanh")(latent)
    x = keras.layers.Conv2D(contract.LATENT_CHANNELS, 3, padding="same")(x)
    x = x + keras.layers.Reshape((1, 1, contract.LATENT_CHANNELS))(text + time)
    return keras.Model([latent, embedding, context], x, name="standin_diffusion_model")


def decoder(height, width):
    latent = keras.Input(
        (height // contract.LATENT_DOWNSCALE, width // contract.LATENT_DOWNSCALE, contract.LATENT_CHANNELS)
    )
    x = keras.layers.UpSampling2D(contract.LATENT_DOWNSCALE)(latent)
    x = keras.layers.Conv2D(3, 3, padding="same", activation="tanh")(x)
    return keras.Model(latent, x, name="standin_decoder")


def components(height, width, seed=1234, precision=contract.DEFAULT_PRECISION):
    keras.utils.set_random_seed(seed)
    with dtype_policy(precision):
        return Components(text_encoder(), diffusion_model(height, width), decoder(height, width))
