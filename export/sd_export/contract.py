"""The signature contract: model, signature, input and output names, dtypes and shapes.

Written once here for the exporter. The client (`sd_client.contract`) keeps its own copy because it must not import
this package; tests/test_contract.py ties the copies together and checks every exported SavedModel against them.

Shapes use symbolic dimensions: "batch" (the request's batch, -1 in a signature), "height"/"width" (pixels) and
"latent_height"/"latent_width" (pixels / 8). () is a scalar.
"""

MAX_PROMPT_TOKENS = 77  # CLIP's context length
START_TOKEN = 49406  # <|startoftext|>
END_TOKEN = 49407  # <|endoftext|>, also the padding id
VOCAB_SIZE = 49408  # ids are in [0, VOCAB_SIZE)
CONTEXT_DIM = 768  # CLIP ViT-L/14 hidden size
LATENT_CHANNELS = 4
LATENT_DOWNSCALE = 8  # pixels per latent cell along each axis
TIMESTEP_EMBEDDING_DIM = 320
TRAIN_TIMESTEPS = 1000

MAX_NUM_STEPS = 1000
MAX_SEED = 2**31 - 2  # seeds are int32 in [0, MAX_SEED]
MAX_PROMPT_BYTES = 4096
DEFAULT_MAX_BATCH = 8
MAX_MAX_BATCH = 64  # the export option's own cap
RESOLUTION_STEP = 64  # the U-Net takes multiples of 64 from 128 up
MIN_RESOLUTION = 128

# The dtype the weights are stored and computed in (sd-export --precision). Signature inputs and outputs keep the
# dtypes below whatever the precision: the casts happen inside the graph.
PRECISIONS = ("float32", "bfloat16", "float16")
DEFAULT_PRECISION = "float32"  # KerasCV's own default, so exports match KerasCV's images unless asked otherwise

TEXT_ENCODER = "text_encoder"
DIFFUSION_MODEL = "diffusion_model"
DECODER = "decoder"
TEXT_TO_IMAGE = "text_to_image"
SPLIT_MODELS = (TEXT_ENCODER, DIFFUSION_MODEL, DECODER)

DEFAULT_SIGNATURE = "serving_default"
FROM_NOISE_SIGNATURE = "from_noise"
PNG_SIGNATURE = "png"

_TOKENS = ("int32", ("batch", MAX_PROMPT_TOKENS))
_CONTEXT = ("float32", ("batch", MAX_PROMPT_TOKENS, CONTEXT_DIM))
_LATENT = ("float32", ("batch", "latent_height", "latent_width", LATENT_CHANNELS))
_GUIDANCE = {
    "context": _CONTEXT,
    "unconditional_context": _CONTEXT,
    "num_steps": ("int32", ()),
    "guidance_scale": ("float32", ()),
}

# model -> signature -> {"inputs": {name: (dtype, shape)}, "outputs": {...}}
SIGNATURES = {
    TEXT_ENCODER: {
        DEFAULT_SIGNATURE: {
            "inputs": {"tokens": _TOKENS, "negative_tokens": _TOKENS},
            "outputs": {"context": _CONTEXT, "unconditional_context": _CONTEXT},
        },
    },
    DIFFUSION_MODEL: {
        DEFAULT_SIGNATURE: {
            "inputs": {**_GUIDANCE, "seed": ("int32", ("batch",))},
            "outputs": {"latent": _LATENT},
        },
        FROM_NOISE_SIGNATURE: {
            "inputs": {**_GUIDANCE, "initial_latent": _LATENT},
            "outputs": {"latent": _LATENT},
        },
    },
    DECODER: {
        DEFAULT_SIGNATURE: {
            "inputs": {"latent": _LATENT},
            "outputs": {"images": ("uint8", ("batch", "height", "width", 3))},
        },
        PNG_SIGNATURE: {
            "inputs": {"latent": _LATENT},
            "outputs": {"images_bytes": ("string", ("batch",))},
        },
    },
    TEXT_TO_IMAGE: {
        DEFAULT_SIGNATURE: {
            "inputs": {
                "prompt": ("string", ("batch",)),
                "negative_prompt": ("string", ("batch",)),
                "num_steps": ("int32", ()),
                "guidance_scale": ("float32", ()),
                "seed": ("int32", ("batch",)),
            },
            "outputs": {"images_bytes": ("string", ("batch",))},
        },
    },
}


def concrete_shape(shape, height, width):
    """A contract shape with its symbols replaced: batch -> None, sizes -> pixels or latent cells."""
    def latent(pixels):
        return None if pixels is None else pixels // LATENT_DOWNSCALE

    sizes = {"batch": None, "height": height, "width": width, "latent_height": latent(height), "latent_width": latent(width)}
    return tuple(sizes[dim] if isinstance(dim, str) else dim for dim in shape)


def check_precision(precision):
    """Raise ValueError unless `precision` is one sd-export can write."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not supported: use one of {', '.join(PRECISIONS)}")


def check_resolution(height, width):
    """Raise ValueError unless the U-Net can take height x width."""
    for name, value in (("height", height), ("width", width)):
        if value < MIN_RESOLUTION or value % RESOLUTION_STEP:
            raise ValueError(
                f"{name} {value} is not supported: use a multiple of {RESOLUTION_STEP} "
                f"from {MIN_RESOLUTION} up (e.g. 512)"
            )
