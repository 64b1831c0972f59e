"""The client's copy of the signature contract (model, signature, input and output names, dtypes, shapes, limits).

The exporter's `sd_export.contract` is the original; the client keeps a copy because it must not import the exporter
(and with it TensorFlow). tests/client/test_client_contract_copy.py checks that every name there has the same
value here.

Shapes use symbolic dimensions: "batch", "height"/"width" (pixels), "latent_height"/"latent_width" (pixels / 8);
() is a scalar.
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
# The dtypes a version's weights may be stored and computed in (its provenance says which); inputs and outputs keep
# the dtypes below whatever the precision.
PRECISIONS = ("float32", "bfloat16", "float16")
DEFAULT_PRECISION = "float32"

TEXT_ENCODER = "text_encoder"
DIFFUSION_MODEL = "diffusion_model"
DECODER = "decoder"
TEXT_TO_IMAGE = "text_to_image"
SPLIT_MODELS = (TEXT_ENCODER, DIFFUSION_MODEL, DECODER)

DEFAULT_SIGNATURE = "serving_default"
FROM_NOISE_SIGNATURE = "from_noise"
PNG_SIGNATURE = "png"
PROVENANCE_SIGNATURE = "provenance"

# What every version records about how it was made (the `provenance` signature answers these keys; "" = unknown).
PROVENANCE_KEYS = ("precision", "source_format", "source_sha256")

# The samplers, chosen per request: the signatures below take a `sampler` input (one of these names, case ignored);
# serving_default and from_noise run DDIM, KerasCV's sampler.
SAMPLER_SIGNATURE = "with_sampler"
SAMPLER_FROM_NOISE_SIGNATURE = "with_sampler_from_noise"
SAMPLERS = ("DDIM", "DPM++ 2M", "DPM++ 2M Karras", "Euler", "Euler a")
DEFAULT_SAMPLER = "DDIM"
# Fewer steps than MAX_NUM_STEPS for some: DPM++ 2M's spacing repeats a timestep at 1000 steps (a division by zero).
SAMPLER_MAX_STEPS = {"DPM++ 2M": MAX_NUM_STEPS - 1}

_TOKENS = ("int32", ("batch", MAX_PROMPT_TOKENS))
_CONTEXT = ("float32", ("batch", MAX_PROMPT_TOKENS, CONTEXT_DIM))
_LATENT = ("float32", ("batch", "latent_height", "latent_width", LATENT_CHANNELS))
_GUIDANCE = {
    "context": _CONTEXT,
    "unconditional_context": _CONTEXT,
    "num_steps": ("int32", ()),
    "guidance_scale": ("float32", ()),
}
_SEED = ("int32", ("batch",))
_SAMPLER = ("string", ())
_TEXT_TO_IMAGE_INPUTS = {
    "prompt": ("string", ("batch",)),
    "negative_prompt": ("string", ("batch",)),
    "num_steps": ("int32", ()),
    "guidance_scale": ("float32", ()),
    "seed": _SEED,
}

# Only on diffusion_model and text_to_image (TF Serving batches text_encoder and decoder).
_PROVENANCE = {"inputs": {"key": ("string", ("batch",))}, "outputs": {"value": ("string", ("batch",))}}

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
            "inputs": {**_GUIDANCE, "seed": _SEED},
            "outputs": {"latent": _LATENT},
        },
        FROM_NOISE_SIGNATURE: {
            "inputs": {**_GUIDANCE, "initial_latent": _LATENT},
            "outputs": {"latent": _LATENT},
        },
        PROVENANCE_SIGNATURE: _PROVENANCE,
        SAMPLER_SIGNATURE: {
            "inputs": {**_GUIDANCE, "seed": _SEED, "sampler": _SAMPLER},
            "outputs": {"latent": _LATENT},
        },
        # seed: the per-step noise of ancestral samplers (Euler a); the start is initial_latent.
        SAMPLER_FROM_NOISE_SIGNATURE: {
            "inputs": {**_GUIDANCE, "initial_latent": _LATENT, "seed": _SEED, "sampler": _SAMPLER},
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
            "inputs": _TEXT_TO_IMAGE_INPUTS,
            "outputs": {"images_bytes": ("string", ("batch",))},
        },
        SAMPLER_SIGNATURE: {
            "inputs": {**_TEXT_TO_IMAGE_INPUTS, "sampler": _SAMPLER},
            "outputs": {"images_bytes": ("string", ("batch",))},
        },
        PROVENANCE_SIGNATURE: _PROVENANCE,
    },
}


def output_names(model, signature):
    """The output names of a signature, in contract order."""
    return tuple(SIGNATURES[model][signature]["outputs"])


def output_dtype(model, signature, output):
    return SIGNATURES[model][signature]["outputs"][output][0]
