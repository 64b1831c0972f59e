"""The client's CLIP tokenizer against KerasCV's SimpleTokenizer, and its vocabulary lookup."""

import gzip
import hashlib
import http.server
import threading
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


def test_explicit_path_then_env_var_then_cache(tmp_path, monkeypatch, clip_vocab_path):
    monkeypatch.setenv(tokenizer.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(tokenizer.VOCAB_ENV, str(clip_vocab_path))
    assert tokenizer.resolve_vocabulary() == clip_vocab_path
    with pytest.raises(VocabularyError, match="does not exist"):
        tokenizer.resolve_vocabulary(tmp_path / "nope.txt.gz")
    monkeypatch.setenv(tokenizer.VOCAB_ENV, str(tmp_path / "missing.gz"))
    with pytest.raises(VocabularyError, match=tokenizer.VOCAB_ENV):
        tokenizer.resolve_vocabulary()
    monkeypatch.delenv(tokenizer.VOCAB_ENV)
    cached = tmp_path / "cache" / tokenizer.VOCAB_FILENAME
    cached.parent.mkdir()
    cached.write_bytes(clip_vocab_path.read_bytes())
    assert tokenizer.resolve_vocabulary() == cached


def test_a_file_that_is_not_the_vocabulary_is_refused(tmp_path):
    bad = tmp_path / "bad.txt.gz"
    bad.write_bytes(gzip.compress(b"#version\nh e\n"))
    with pytest.raises(VocabularyError, match="not CLIP's BPE vocabulary"):
        ClipTokenizer(bad)
    (tmp_path / "plain.txt.gz").write_text("not gzip")
    with pytest.raises(VocabularyError, match="cannot read"):
        ClipTokenizer(tmp_path / "plain.txt.gz")


class _FileServer:
    """Serves one payload on 127.0.0.1 and counts requests."""

    def __init__(self, payload):
        outer = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/bpe.txt.gz"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_download_checks_sha256_and_caches(tmp_path, monkeypatch, clip_vocab_path):
    monkeypatch.delenv(tokenizer.VOCAB_ENV, raising=False)
    monkeypatch.setenv(tokenizer.CACHE_ENV, str(tmp_path))
    server = _FileServer(clip_vocab_path.read_bytes())
    try:
        monkeypatch.setattr(tokenizer, "VOCAB_URL", server.url)
        path = tokenizer.resolve_vocabulary()
        assert path == tmp_path / tokenizer.VOCAB_FILENAME
        assert hashlib.sha256(path.read_bytes()).hexdigest() == tokenizer.VOCAB_SHA256
        tokenizer.resolve_vocabulary()
        assert server.requests == 1  # the second time from the cache
    finally:
        server.close()


def test_download_with_the_wrong_hash_is_refused_and_not_cached(tmp_path, monkeypatch):
    monkeypatch.delenv(tokenizer.VOCAB_ENV, raising=False)
    monkeypatch.setenv(tokenizer.CACHE_ENV, str(tmp_path))
    server = _FileServer(b"something else")
    try:
        monkeypatch.setattr(tokenizer, "VOCAB_URL", server.url)
        with pytest.raises(VocabularyError, match="expected 924691ac"):
            tokenizer.resolve_vocabulary()
    finally:
        server.close()
    assert not (tmp_path / tokenizer.VOCAB_FILENAME).exists()


def test_offline_without_a_vocabulary_says_how_to_provide_one(tmp_path, monkeypatch):
    monkeypatch.delenv(tokenizer.VOCAB_ENV, raising=False)
    monkeypatch.setenv(tokenizer.CACHE_ENV, str(tmp_path))
    server = _FileServer(b"")
    url = server.url
    server.close()  # nothing listens there now: connection refused, as offline
    monkeypatch.setattr(tokenizer, "VOCAB_URL", url)
    with pytest.raises(VocabularyError) as caught:
        ClipTokenizer()
    message = str(caught.value)
    assert "downloading" in message and tokenizer.VOCAB_ENV in message and "vocab_path" in message
