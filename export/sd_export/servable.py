"""What the three servables share: weights tracked once, Keras models called without being tracked."""

import tensorflow as tf

from sd_export import contract


class Servable(tf.Module):
    """A tf.Module that stores the Keras models' TF variables, not the Keras models themselves.

    Tracking a Keras 3 model as an attribute writes a SavedModel that TF Serving's TF1 session loader cannot run
    ("Could not find variable ..."), and keras.export.ExportArchive stores every variable
    twice (both measured with TF 2.21 / Keras 3.15). Tracking `[v.value for v in model.variables]` stores each variable once, and the
    models are reached through closures in the subclasses' tf.functions.
    """

    def __init__(self, name, *keras_models):
        super().__init__(name=name)
        self.weights = [v.value for model in keras_models for v in model.variables]

    def serve(self, functions):
        """Keep `functions` ({signature name: tf.function}) for signatures(), out of tf.Module's tracking.

        A tracked tf.function is saved for TF2's object graph as well, and that second trace repeats every function it
        calls: twice the graph in saved_model.pb, and the model server loads both copies while only the signatures' is
        ever run (about 0.2 GB of a 128² server's peak; tests/export/test_repository.py walks the functions). A plain
        dict, stored past tf.Module's __setattr__, is not tracked."""
        object.__setattr__(self, "_signature_functions", dict(functions))

    def signatures(self):
        """{signature name: concrete function} for tf.saved_model.save, traced under the stored precision's policy.

        KerasCV's CrossAttention makes a Keras layer on every call (td_dot's Dot), and a layer computes in the dtype of
        the policy that is global when it is made. Traced under float32's, a half-precision U-Net would compute its
        attention scores and softmax in float32: 1 GB a layer at 512² where bfloat16 needs 0.5, and not the arithmetic
        of KerasCV under mixed_bfloat16, whose Dot layers compute in bfloat16."""
        from sd_export.weights import dtype_policy, precision_of_variables

        with dtype_policy(precision_of_variables(self.weights)):
            return {name: function.get_concrete_function() for name, function in self._signature_functions.items()}


def input_signature(model, signature, height=None, width=None):
    """The tf.function input signature of a contract signature, in the contract's input order."""
    inputs = contract.SIGNATURES[model][signature]["inputs"]
    return [
        tf.TensorSpec(contract.concrete_shape(shape, height, width), dtype, name=name)
        for name, (dtype, shape) in inputs.items()
    ]
