"""Warmup at load: run the PredictionLog records in assets.extra/tf_serving_warmup_requests, as TF Serving does.

TF Serving runs each record's request once against the freshly loaded session (saved_model_warmup_util.cc); a
record that fails fails the load, and more than 1000 records are refused.
"""

from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from sd_serving import tensors
from sd_serving.errors import ServingError

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_RECORDS = 1000


class WarmupError(Exception):
    pass


def warmup_path(version_dir):
    return Path(version_dir) / WARMUP_FILE


def run_warmup(loaded):
    """Run every warmup record of a LoadedVersion; returns how many ran (0 without a warmup file)."""
    path = warmup_path(loaded.path)
    if not path.is_file():
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        count += 1
        if count > MAX_RECORDS:
            raise WarmupError(f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}")
        run_record(loaded, record, path, count)
    return count


def run_record(loaded, record, path, number):
    log = prediction_log_pb2.PredictionLog()
    try:
        log.ParseFromString(record)
    except Exception:
        raise WarmupError(f"Failed to parse warmup record {number} from {path}") from None
    if log.WhichOneof("log_type") != "predict_log":
        raise WarmupError(
            f"Unsupported log_type for warmup: {log.WhichOneof('log_type')} (record {number} of {path}); "
            "the local server runs predict_log records"
        )
    request = log.predict_log.request
    try:
        signature = loaded.signature(request.model_spec.signature_name)
        inputs = tensors.arrays_from_protos(signature, request.inputs)
        loaded.run(request.model_spec.signature_name, inputs, request.output_filter)
    except ServingError as error:
        raise WarmupError(f"warmup record {number} of {path} failed: {error.message}") from None
