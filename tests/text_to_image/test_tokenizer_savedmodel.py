"""The in-graph tokenizer exported alone and run as TF Serving runs it: its ids, its op types, its vocabulary asset and
its errors. graph_ops.py holds the op-type helpers that the text_to_image model's tests reuse."""

import shutil

import numpy as np
import pytest
import tensorflow as tf
from graph_ops import PYTHON_CALLBACK_OPS, graph_op_types, served_op_types, unserved_op_types
from prompt_corpus import PROMPTS
from tf1 import Tf1Model

from sd_export import contract
from sd_export.tokenizer_graph import MERGES_ASSET

MERGES = 48_894


def run(model, prompts):
    return model.run("serving_default", {"prompt": np.array(prompts, dtype=object)})["tokens"]


def test_served_rows_equal_keras_cv(served_tokenizer, keras_rows):
    rows = run(served_tokenizer, PROMPTS)
    assert rows.dtype == np.int32
    np.testing.assert_array_equal(rows, keras_rows(PROMPTS))


def test_signature_is_prompt_to_tokens(served_tokenizer):
    signature = served_tokenizer.signature("serving_default")
    assert signature.inputs["prompt"].dtype == tf.string.as_datatype_enum
    assert [d.size for d in signature.inputs["prompt"].tensor_shape.dim] == [-1]
    assert signature.outputs["tokens"].dtype == tf.int32.as_datatype_enum
    assert [d.size for d in signature.outputs["tokens"].tensor_shape.dim] == [-1, contract.MAX_PROMPT_TOKENS]


def test_the_model_server_has_every_op_the_graph_uses(served_tokenizer):
    used = graph_op_types(served_tokenizer.meta_graph)
    # The walk reaches into the function library: the BPE loop's body and the lookups live there.
    assert {"While", "LookupTableFindV2", "StaticRegexReplace", "UnicodeDecode"} <= used
    assert not unserved_op_types(served_tokenizer.meta_graph), sorted(used - served_op_types())


def test_served_op_types_are_tensorflow_and_tf_text_without_python_callbacks():
    served = served_op_types()
    assert {"StaticRegexReplace", "HashTableV2", "RegexSplitWithOffsets", "WordpieceTokenizeWithOffsets"} <= served
    assert not served & PYTHON_CALLBACK_OPS


class PythonCallback(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, prompt):
        return {"length": tf.py_function(lambda p: tf.strings.length(p), [prompt], tf.int32)}


def test_a_python_callback_inside_a_function_is_found(tmp_path):
    module = PythonCallback()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel.FromString((tmp_path / "saved_model.pb").read_bytes())
    meta_graph = saved_model.meta_graphs[0]
    assert not {node.op for node in meta_graph.graph_def.node} & PYTHON_CALLBACK_OPS  # only inside a function
    assert "EagerPyFunc" in unserved_op_types(meta_graph)


def test_the_merge_list_is_an_asset_not_a_constant(tokenizer_export_dir, served_tokenizer):
    asset = tokenizer_export_dir / "assets" / MERGES_ASSET
    assert len(asset.read_text(encoding="utf-8").splitlines()) == MERGES
    graph = served_tokenizer.meta_graph.graph_def
    nodes = [*graph.node, *(node for function in graph.library.function for node in function.node_def)]
    constants = [tf.make_ndarray(node.attr["value"].tensor) for node in nodes if node.op == "Const"]
    largest = max(constant.size for constant in constants)
    assert largest < MERGES // 10, f"a constant with {largest} elements"


def test_the_merge_list_is_read_from_the_asset_at_load(tokenizer_export_dir, tmp_path, keras_rows):
    copy = tmp_path / "1"
    shutil.copytree(tokenizer_export_dir, copy)
    asset = copy / "assets" / MERGES_ASSET
    asset.write_text("".join(asset.read_text(encoding="utf-8").splitlines(keepends=True)[:100]), encoding="utf-8")
    model = Tf1Model(copy)
    try:
        rows = run(model, ["a photograph of an astronaut"])
    finally:
        model.close()
    # Without the later merges, the words fall apart into more, smaller tokens.
    complete = keras_rows(["a photograph of an astronaut"])
    assert (rows != contract.END_TOKEN).sum() > (complete != contract.END_TOKEN).sum()


@pytest.mark.parametrize(
    "prompt, message",
    [
        (b"caf\xe9", r"prompt: not valid UTF-8 at batch index:\] \[1\]"),
        ("x" * (contract.MAX_PROMPT_BYTES + 1), r"prompt: longer than 4096 UTF-8 bytes at batch index:\] \[1\]"),
        ("a" * 10_000, "prompt: longer than 4096 UTF-8 bytes"),
    ],
)
def test_a_bad_prompt_is_an_invalid_argument_and_the_session_goes_on(served_tokenizer, keras_rows, prompt, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        run(served_tokenizer, ["fine", prompt])
    np.testing.assert_array_equal(run(served_tokenizer, ["fine"]), keras_rows(["fine"]))


def test_an_empty_batch_gives_no_rows(served_tokenizer):
    assert run(served_tokenizer, []).shape == (0, contract.MAX_PROMPT_TOKENS)
