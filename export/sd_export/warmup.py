"""Warmup records: one small request per signature (of the U-Net's, with_sampler only), so TF Serving pays tracing and
initialization at load time.

TF Serving reads assets.extra/tf_serving_warmup_requests (a TFRecord of tensorflow.serving.PredictionLog) from each
version folder when --enable_model_warmup is on (its default).
"""

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from sd_export import contract

WARMUP_FILE = ("assets.extra", "tf_serving_warmup_requests")


def example_inputs(model, signature, height, width):
    """A batch-of-one request that every signature accepts (one denoising step for the diffusion model)."""
    latent_shape = (1, height // contract.LATENT_DOWNSCALE, width // contract.LATENT_DOWNSCALE, contract.LATENT_CHANNELS)
    unconditional_tokens = np.full((1, contract.MAX_PROMPT_TOKENS), contract.END_TOKEN, np.int32)
    unconditional_tokens[:, 0] = contract.START_TOKEN
    context = np.zeros((1, contract.MAX_PROMPT_TOKENS, contract.CONTEXT_DIM), np.float32)
    values = {
        "tokens": unconditional_tokens,
        "negative_tokens": unconditional_tokens,
        "context": context,
        "unconditional_context": context,
        "num_steps": np.int32(1),
        "guidance_scale": np.float32(7.5),
        "seed": np.zeros([1], np.int32),
        "initial_latent": np.zeros(latent_shape, np.float32),
        "latent": np.zeros(latent_shape, np.float32),
        "prompt": np.array([b"warmup"], object),
        "negative_prompt": np.array([b""], object),
        "key": np.array([contract.PROVENANCE_KEYS[0].encode()], object),
        "sampler": np.array(contract.SAMPLERS[-1].encode(), object),  # any name: every sampler shares the U-Net call
    }
    return {name: values[name] for name in contract.SIGNATURES[model][signature]["inputs"]}


# The signatures that call the U-Net. With oneDNN's weight cache (the server's CPU default for one half-precision
# version) each one a session runs keeps its own reordered copy of the U-Net's weights, 1.3-1.5 GB in bfloat16: the
# warmup runs only with_sampler, where the client sends every seeded request (DDIM too), so a served version holds one
# copy until some caller uses another of these.
_UNET_SIGNATURES = (
    contract.DEFAULT_SIGNATURE,
    contract.FROM_NOISE_SIGNATURE,
    contract.SAMPLER_SIGNATURE,
    contract.SAMPLER_FROM_NOISE_SIGNATURE,
)
_UNET_MODELS = (contract.DIFFUSION_MODEL, contract.TEXT_TO_IMAGE)


def warmed_signatures(model):
    """The signatures of `model` that the warmup runs: all, except the U-Net's other than with_sampler."""
    return [
        signature
        for signature in contract.SIGNATURES[model]
        if model not in _UNET_MODELS or signature not in _UNET_SIGNATURES or signature == contract.SAMPLER_SIGNATURE
    ]


def warmup_records(model, height, width):
    """Serialized PredictionLog records, one per warmed signature of `model`."""
    records = []
    for signature in warmed_signatures(model):
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model, signature_name=signature)
        )
        for name, value in example_inputs(model, signature, height, width).items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        records.append(log.SerializeToString())
    return records


def write_warmup(version_dir, model, height, width):
    folder = version_dir.joinpath(WARMUP_FILE[0])
    folder.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(folder / WARMUP_FILE[1])) as writer:
        for record in warmup_records(model, height, width):
            writer.write(record)
