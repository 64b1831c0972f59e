"""One loaded model version: a SavedModel in its own tf.Graph and Session, run by the signature's tensor names.

This is how tensorflow_model_server runs a SavedModel (the TF1 session loader with tag "serve"); loading with
tf.saved_model.load would prove nothing about that path. Session.run is thread-safe, so concurrent requests share the
session; the graph is finalized after loading so nothing can add ops to it later.
"""

import logging

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import op_def_registry
from tensorflow.python.saved_model import loader_impl

from sd_serving import validation
from sd_serving.errors import ServingError, from_tf_error, invalid_argument

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
# Signatures that only exist to initialize the SavedModel (TF2 writes one); listed in metadata, never run.
_INIT_SIGNATURES = ("__saved_model_init_op",)

log = logging.getLogger(__name__)


class LoadError(Exception):
    """A model version that cannot be loaded or warmed up; the message names the model, version and folder."""


class LoadedVersion:
    def __init__(self, name, version, path):
        self.name = name
        self.version = version
        self.path = path
        # tf.compat.v1.saved_model.loader.load in two steps: the op list is read before the graph is imported.
        loader = loader_impl.SavedModelLoader(str(path))
        register_tf_text_ops_if_used(loader.get_meta_graph_def_from_tags([SERVE_TAG]))
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        try:
            with self.graph.as_default():
                self.meta_graph = loader.load(self.session, [SERVE_TAG])
        except Exception:
            self.session.close()
            raise
        self.graph.finalize()
        self.signatures = self.meta_graph.signature_def

    @classmethod
    def load(cls, name, version, path):
        try:
            return cls(name, version, path)
        except Exception as error:
            raise LoadError(f"Failed to load model {name} version {version} from {path}: {_describe(error)}") from None

    def signature(self, signature_name):
        """The SignatureDef; FAILED_PRECONDITION if absent (TF Serving's code for Predict over gRPC)."""
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature key "{name}" not found. This version has: {", ".join(self.runnable_signatures())}',
            )
        if name in _INIT_SIGNATURES:
            raise invalid_argument(f'Serving signature key "{name}" initializes the SavedModel and cannot be run')
        return self.signatures[name]

    def runnable_signatures(self):
        return sorted(name for name in self.signatures if name not in _INIT_SIGNATURES)

    def run(self, signature_name, inputs, output_filter=(), timeout_ms=None):
        """Validate `inputs` ({name: ndarray}) and run the signature; returns {output name: ndarray}."""
        signature = self.signature(signature_name)
        validation.check_inputs(signature, inputs)
        feeds = {
            signature.inputs[name].name: validation.as_feed(array, signature.inputs[name])
            for name, array in inputs.items()
        }
        fetches = {alias: signature.outputs[alias].name for alias in _output_aliases(signature, output_filter)}
        options = tf.compat.v1.RunOptions(timeout_in_ms=int(timeout_ms)) if timeout_ms else None
        try:
            results = self.session.run(fetches, feeds, options=options)
        except tf.errors.OpError as error:
            raise from_tf_error(error) from None
        except (ValueError, TypeError) as error:  # the Python session's own feed checks
            raise invalid_argument(str(error)) from None
        return {alias: np.asarray(value) for alias, value in results.items()}

    def close(self):
        self.session.close()


def register_tf_text_ops_if_used(meta_graph):
    """Register TF Text's ops (RegexSplitWithOffsets, ...: text_to_image's tokenizer) when the MetaGraphDef uses an op
    TensorFlow itself does not register. tensorflow_model_server has them linked in; here they come with
    `import tensorflow_text`, which costs about 120 MB of resident memory, so a server of the split models skips it."""
    used = {op.name for op in meta_graph.meta_info_def.stripped_op_list.op}
    if any(op_def_registry.get(name) is None for name in used):
        import tensorflow_text  # noqa: F401


def _output_aliases(signature, output_filter):
    """The outputs to fetch: output_filter (checked as TF Serving does) or every output of the signature."""
    if not output_filter:
        return sorted(signature.outputs)
    seen = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{{{','.join(sorted(signature.outputs))}}}."
            )
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)


def _describe(error):
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return " ".join(message.split())[:2000]
