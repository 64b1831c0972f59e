"""The in-graph CLIP tokenizer, KerasCV's SimpleTokenizer as its reference, and a tiny SavedModel that serves it."""

import numpy as np
import pytest
import tensorflow as tf
from tf1 import Tf1Model

from sd_export import contract


@pytest.fixture(scope="session")
def graph_tokenizer(clip_vocab_path):
    from sd_export.tokenizer_graph import ClipTokenizer

    return ClipTokenizer(clip_vocab_path)


@pytest.fixture(scope="session")
def keras_tokenizer(clip_vocab_path):
    from keras_cv.models.stable_diffusion import SimpleTokenizer

    return SimpleTokenizer(bpe_path=str(clip_vocab_path))


@pytest.fixture(scope="session")
def graph_bpe_ids(graph_tokenizer):
    """prompts -> every BPE id of each (a list per prompt, not cut): the tokenizer traced once, in a graph."""
    traced = tf.function(graph_tokenizer.bpe_ids, input_signature=[tf.TensorSpec([None], tf.string)])

    def bpe_ids(prompts, batch=512):
        ids = []
        for start in range(0, len(prompts), batch):
            ids += traced(tf.constant(prompts[start : start + batch], tf.string)).to_list()
        return ids

    return bpe_ids


@pytest.fixture(scope="session")
def keras_rows(keras_tokenizer):
    """prompts -> SimpleTokenizer's ids as the thin client sends them: ids[:76] + [end] if longer than 77, then
    padded with the end token to 77."""

    def rows(prompts):
        result = []
        for prompt in prompts:
            ids = keras_tokenizer.encode(prompt)
            if len(ids) > contract.MAX_PROMPT_TOKENS:
                ids = ids[: contract.MAX_PROMPT_TOKENS - 1] + [contract.END_TOKEN]
            result.append(ids + [contract.END_TOKEN] * (contract.MAX_PROMPT_TOKENS - len(ids)))
        return np.array(result, np.int32).reshape(-1, contract.MAX_PROMPT_TOKENS)

    return rows


class TokenizerServable(tf.Module):
    """The tokenizer alone behind a `serving_default` signature: prompt string [B] -> tokens int32 [B, 77]."""

    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer = tokenizer

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="prompt")])
    def serve(self, prompt):
        return {"tokens": self.tokenizer.tokenize(prompt, "prompt")}


@pytest.fixture(scope="session")
def tokenizer_export_dir(graph_tokenizer, tmp_path_factory):
    export_dir = tmp_path_factory.mktemp("tokenizer") / "1"
    servable = TokenizerServable(graph_tokenizer)
    tf.saved_model.save(servable, str(export_dir), signatures={"serving_default": servable.serve})
    return export_dir


@pytest.fixture(scope="session")
def served_tokenizer(tokenizer_export_dir):
    """The tokenizer SavedModel as TF Serving runs it: TF1 session loader, signature tensor names."""
    model = Tf1Model(tokenizer_export_dir)
    yield model
    model.close()
