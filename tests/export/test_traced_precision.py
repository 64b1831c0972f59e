"""Signatures are traced under the stored precision's dtype policy: KerasCV's CrossAttention makes a Keras layer
(td_dot's Dot) each time it is called, and that layer computes in the policy global at that moment. Traced under
float32's, a half-precision U-Net's attention scores and softmax would run in float32. KerasCV's real layer, tiny."""

import keras
import pytest
import tensorflow as tf
from keras_cv.src.models.stable_diffusion.diffusion_model import CrossAttention

from sd_export.servable import Servable
from sd_export.weights import dtype_policy

TOKENS, WIDTH = 16, 8


class AttentionServable(Servable):
    def __init__(self, precision):
        with dtype_policy(precision):
            inputs = keras.Input((TOKENS, WIDTH))
            model = keras.Model(inputs, CrossAttention(num_heads=2, head_size=WIDTH // 2)(inputs))
        super().__init__("attention", model)

        @tf.function(input_signature=[tf.TensorSpec((1, TOKENS, WIDTH), tf.float32)])
        def serving_default(x):
            # called as the U-Net is in the sampling loop: KerasCV makes new Dot layers here
            return {"y": tf.cast(model(x), tf.float32)}

        self.serve({"serving_default": serving_default})


def attention_dtypes(concrete_function):
    graph = concrete_function.graph
    return {op.get_attr("T").name for op in graph.get_operations() if op.type in ("BatchMatMulV2", "Softmax")}


@pytest.mark.parametrize("precision", ["bfloat16", "float16", "float32"])
def test_the_attention_computes_in_the_stored_precision_when_traced(precision):
    assert keras.config.dtype_policy().name == "float32"  # what is global when an exporter traces
    signature = AttentionServable(precision).signatures()["serving_default"]
    assert attention_dtypes(signature) == {precision}
    assert keras.config.dtype_policy().name == "float32"  # and is global again afterwards
