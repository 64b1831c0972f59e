"""Tiny SavedModels and config/warmup writers for the server tests (the contract's models come from the exporter)."""

from pathlib import Path

import tensorflow as tf
import tensorflow_text
from google.protobuf import text_format
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


class Strings(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serving_default(self, text):
        return {"length": tf.strings.length(text), "upper": tf.strings.upper(text), "echo_bytes": text}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def total(self, text):
        return {"total": tf.reduce_sum(tf.strings.length(text))}  # a scalar output: no row form for it

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def words(self, text):
        # RegexSplitWithOffsets is a TF Text op, as text_to_image's tokenizer uses: the server must register them.
        return {"word_count": tf.cast(tensorflow_text.regex_split(text, r"\s+").row_lengths(), tf.int32)}


class Slow(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="iterations")])
    def serving_default(self, iterations):
        def body(i, value):  # enough arithmetic per step that a running loop keeps a core busy
            square = tf.fill([128, 128], tf.cast(i % 7, tf.float32) * 1e-3)
            return i + 1, value * 0.5 + tf.reduce_mean(tf.matmul(square, square))

        _, value = tf.while_loop(lambda i, _: i < iterations, body, [tf.constant(0), tf.constant(0.0)])
        return {"value": value}


def save_module(module, version_dir, signature_names):
    signatures = {name: getattr(module, name).get_concrete_function() for name in signature_names}
    tf.saved_model.save(module, str(version_dir), signatures=signatures)


def write_warmup(version_dir, requests):
    """requests: [(signature_name, {input: ndarray})] written as PredictionLog records."""
    path = Path(version_dir) / WARMUP_FILE
    path.parent.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature_name, inputs in requests:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=signature_name))
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def write_config(path, models):
    """models: {name: (base_path, policy_text or None, {label: version})} -> a models.config at `path`."""
    config = model_server_config_pb2.ModelServerConfig()
    for name, (base_path, policy, labels) in models.items():
        entry = config.model_config_list.config.add(name=name, base_path=str(base_path), model_platform="tensorflow")
        if policy:
            text_format.Parse(policy, entry.model_version_policy)
        for label, version in labels.items():
            entry.version_labels[label] = version
    Path(path).write_text(text_format.MessageToString(config))
    return Path(path)
