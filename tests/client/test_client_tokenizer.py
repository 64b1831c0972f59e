"""The client's CLIP tokenizer against KerasCV's SimpleTokenizer, and its vocabulary lookup."""

import gzip
import hashlib
import warnings

import numpy as np
import pytest
from prompt_corpus import PROMPTS

from sd_client import contract, tokenizer
from sd_client.errors import PromptTooLong, ValidationError, VocabularyError
from sd_client.tokenizer import ClipTokenizer, PromptTruncatedWarning


@pytest.fixture(scope="module")
def client_tokenizer(clip_vocab_path):
    return ClipTokenizer(clip_vocab_path)


@pytest.fixture(scope="module")
def keras_tokenizer(clip_vocab_path):
    from keras_cv.models.stable_diffusion import SimpleTokenizer

    return SimpleTokenizer(bpe_path=str(clip_vocab_path))


def test_ids_equal_keras_cv_on_the_whole_corpus(client_tokenizer, keras_tokenizer):
    differing = [p for p in PROMPTS if client_tokenizer.encode(p) != keras_tokenizer.encode(p)]
    assert not differing, f"{len(differing)}/{len(PROMPTS)} prompts tokenized differently: {differing[:5]}"


def test_padded_rows_equal_what_keras_cv_feeds_its_text_encoder(client_tokenizer, keras_tokenizer):
    for prompt in PROMPTS:
        ids = keras_tokenizer.encode(prompt)
        if len(ids) > contract.MAX_PROMPT_TOKENS:
            continue  # KerasCV refuses these; cutting is tested below
        expected = ids + [contract.END_TOKEN] * (contract.MAX_PROMPT_TOKENS - len(ids))  # StableDiffusion.encode_text
        row = client_tokenizer.tokenize(prompt)
        assert row.dtype == np.int32 and row.tolist() == expected, prompt


def test_empty_prompt_is_keras_cv_unconditional_row(client_tokenizer):
    from keras_cv.src.models.stable_diffusion.constants import _UNCONDITIONAL_TOKENS

    assert list(tokenizer.UNCONDITIONAL_TOKENS) == list(_UNCONDITIONAL_TOKENS)
    assert client_tokenizer.tokenize("").tolist() == list(_UNCONDITIONAL_TOKENS)
    batch = client_tokenizer.tokenize_batch([None, "", "x"])
    assert batch.shape == (3, 77) and batch.dtype == np.int32
    assert batch[0].tolist() == batch[1].tolist() == list(_UNCONDITIONAL_TOKENS)
    assert batch[2].tolist() != list(_UNCONDITIONAL_TOKENS)


def test_long_prompt_is_cut_to_77_keeping_the_end_token_and_says_what_was_dropped(client_tokenizer, keras_tokenizer):
    prompt = " ".join(f"word{i}" for i in range(40))  # "wordN" = 2 or 3 tokens each: over 77
    full = keras_tokenizer.encode(prompt)
    assert len(full) > 77
    with pytest.warns(PromptTruncatedWarning) as caught:
        row = client_tokenizer.tokenize(prompt)
    assert row.tolist() == full[:76] + [contract.END_TOKEN]
    message = str(caught[0].message)
    assert f"dropped {len(full) - 77} tokens" in message
    dropped = message.split("tokens: ", 1)[1]
    # names the dropped tail (CLIP's decoding puts a space after each digit), not the kept head
    assert dropped.rstrip("'").endswith("word 3 9") and "word 0 " not in dropped


def test_exactly_77_tokens_is_not_cut(client_tokenizer):
    prompt = "a " * 75  # start + 75 + end = 77
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = client_tokenizer.tokenize(prompt)
    assert row[-1] == contract.END_TOKEN and row[-2] != contract.END_TOKEN


def test_strict_refuses_a_long_prompt(client_tokenizer):
    with pytest.raises(PromptTooLong, match="dropped"):
        client_tokenizer.tokenize("word " * 100, strict=True)


def test_prompt_over_4096_utf8_bytes_is_refused(client_tokenizer):
    with pytest.warns(PromptTruncatedWarning, match=r"\.\.\.'$"):  # accepted, cut; the warning stays short
        client_tokenizer.tokenize("é" * 2048)  # 4096 bytes
    with pytest.raises(PromptTooLong, match="4098 UTF-8 bytes"):
        client_tokenizer.tokenize("é" * 2049)
    with pytest.raises(ValidationError, match="must be a str"):
        client_tokenizer.tokenize(b"bytes")


def test_explicit_path_then_env_var_then_the_shipped_copy(tmp_path, monkeypatch, clip_vocab_path):
    other = tmp_path / "other.txt.gz"
    other.write_bytes(clip_vocab_path.read_bytes())
    monkeypatch.setenv(tokenizer.VOCAB_ENV, str(other))
    assert tokenizer.resolve_vocabulary() == other
    with pytest.raises(VocabularyError, match="does not exist"):
        tokenizer.resolve_vocabulary(tmp_path / "nope.txt.gz")
    monkeypatch.setenv(tokenizer.VOCAB_ENV, str(tmp_path / "missing.gz"))
    with pytest.raises(VocabularyError, match=tokenizer.VOCAB_ENV):
        tokenizer.resolve_vocabulary()
    monkeypatch.delenv(tokenizer.VOCAB_ENV)
    assert tokenizer.resolve_vocabulary() == tokenizer.SHIPPED_VOCAB


def test_the_shipped_vocabulary_is_clips_and_the_exporters_is_the_same_file():
    """One copy in git (sd_export/clip links to sd_client/clip), with the sha256 KerasCV checks on download."""
    from sd_export import cli

    assert hashlib.sha256(tokenizer.SHIPPED_VOCAB.read_bytes()).hexdigest() == tokenizer.VOCAB_SHA256
    assert cli.CLIP_VOCAB_SHA256 == tokenizer.VOCAB_SHA256
    assert cli.SHIPPED_CLIP_VOCAB.resolve() == tokenizer.SHIPPED_VOCAB.resolve()
    assert cli.resolve_clip_vocab(None) == cli.SHIPPED_CLIP_VOCAB


def test_a_damaged_shipped_vocabulary_is_refused_by_the_exporter(tmp_path, monkeypatch):
    from sd_export import cli

    damaged = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    damaged.write_bytes(b"not the vocabulary")
    monkeypatch.setattr(cli, "SHIPPED_CLIP_VOCAB", damaged)
    with pytest.raises(RuntimeError, match="damaged.*--clip-vocab"):
        cli.resolve_clip_vocab(None)


def test_a_file_that_is_not_the_vocabulary_is_refused(tmp_path):
    bad = tmp_path / "bad.txt.gz"
    bad.write_bytes(gzip.compress(b"#version\nh e\n"))
    with pytest.raises(VocabularyError, match="not CLIP's BPE vocabulary"):
        ClipTokenizer(bad)
    (tmp_path / "plain.txt.gz").write_text("not gzip")
    with pytest.raises(VocabularyError, match="cannot read"):
        ClipTokenizer(tmp_path / "plain.txt.gz")
