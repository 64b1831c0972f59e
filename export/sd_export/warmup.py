"""Warmup records: one small request per signature, so TF Serving pays tracing and initialization at load time.

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


def warmup_records(model, height, width):
    """Serialized PredictionLog records, one per signature of `model`."""
    records = []
    for signature in contract.SIGNATURES[model]:
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
