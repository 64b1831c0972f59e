"""The in-graph CLIP tokenizer against KerasCV's SimpleTokenizer: ids, each cleaning step, the 77-token cut, bad
prompts and speed. (tests/text_to_image/test_tokenizer_savedmodel.py runs it exported, as TF Serving does.)"""

import gzip
import html.entities
import random
import time
import unicodedata

import numpy as np
import pytest
import regex
import tensorflow as tf
from prompt_corpus import PROMPTS, random_prompts

from sd_export import contract

RANDOM_PROMPTS = 3000


def differences(prompts, got, expected):
    return [(prompt, g, e) for prompt, g, e in zip(prompts, got, expected) if list(g) != list(e)]


def keras_bpe_ids(keras_tokenizer, prompts):
    return [keras_tokenizer.encode(prompt)[1:-1] for prompt in prompts]


def test_corpus_ids_equal_keras_cv(graph_bpe_ids, keras_tokenizer):
    wrong = differences(PROMPTS, graph_bpe_ids(PROMPTS), keras_bpe_ids(keras_tokenizer, PROMPTS))
    assert not wrong, f"{len(wrong)}/{len(PROMPTS)} prompts differ, e.g. {wrong[:3]}"


@pytest.fixture(scope="module")
def vocabulary_words(keras_tokenizer):
    ids = random.Random(5).sample(range(contract.START_TOKEN), 4000)
    return [keras_tokenizer.decode([token]).strip() for token in ids]


def test_random_prompt_ids_equal_keras_cv(graph_bpe_ids, keras_tokenizer, vocabulary_words):
    prompts = random_prompts(RANDOM_PROMPTS, seed=2024, words=vocabulary_words)
    expected = keras_bpe_ids(keras_tokenizer, prompts)
    wrong = differences(prompts, graph_bpe_ids(prompts), expected)
    assert not wrong, f"{len(wrong)}/{len(prompts)} random prompts differ, e.g. {wrong[:3]}"
    # The corpus must reach what it is meant to: prompts cut at 77 tokens, HTML references, non-ASCII text.
    assert sum(len(ids) > contract.MAX_PROMPT_TOKENS - 2 for ids in expected) > RANDOM_PROMPTS // 20
    assert sum("&" in prompt for prompt in prompts) > RANDOM_PROMPTS // 10
    assert sum(not prompt.isascii() for prompt in prompts) > RANDOM_PROMPTS // 2


def test_rows_are_cut_and_padded_as_the_client_sends_them(graph_tokenizer, keras_rows, vocabulary_words):
    prompts = PROMPTS + random_prompts(300, seed=7, words=vocabulary_words)
    rows = graph_tokenizer(tf.constant(prompts)).numpy()
    assert rows.shape == (len(prompts), contract.MAX_PROMPT_TOKENS) and rows.dtype == np.int32
    wrong = differences(prompts, rows, keras_rows(prompts))
    assert not wrong, f"{len(wrong)} rows differ, e.g. {wrong[:2]}"


@pytest.mark.parametrize("words", [74, 75, 76, 200])
def test_a_long_prompt_keeps_its_first_75_ids(graph_tokenizer, keras_tokenizer, words):
    prompt = " ".join(["cat"] * words)  # one id per word
    row = graph_tokenizer(tf.constant([prompt])).numpy()[0].tolist()
    kept = min(words, contract.MAX_PROMPT_TOKENS - 2)
    ids = keras_tokenizer.encode(prompt)
    assert row[: kept + 1] == ids[: kept + 1]
    assert row[kept + 1 :] == [contract.END_TOKEN] * (contract.MAX_PROMPT_TOKENS - kept - 1)


def sampled_code_points():
    """Every code point of a category with its own behaviour (letters with case, marks, numbers, punctuation,
    symbols, separators, controls, format characters), and every 13th of the rest (other letters, unassigned and
    private-use code points, where `regex` knows newer Unicode than Python)."""
    uniform = ("Lo", "Cn", "Co", "Cs")
    return [
        c
        for c in range(0x110000)
        if not 0xD800 <= c <= 0xDFFF and (unicodedata.category(chr(c)) not in uniform or c % 13 == 0)
    ]


def test_each_character_is_cleaned_and_split_as_keras_cv(graph_tokenizer, keras_tokenizer):
    from keras_cv.src.models.stable_diffusion.clip_tokenizer import basic_clean, whitespace_clean

    # Each character inside contexts that show its class (letter, number, other, space) and its case properties
    # (Final_Sigma looks through case-ignorable characters to the nearest cased one).
    def contexts(c):
        return f"Α{c}Σ {c}Σ ΑΣ{c} a{c}1{c}!'{c} "

    code_points = sampled_code_points()
    prompts = ["".join(contexts(chr(c)) for c in code_points[i : i + 40]) for i in range(0, len(code_points), 40)]
    words = tf.function(graph_tokenizer.words, input_signature=[tf.TensorSpec([None], tf.string)])
    got = [[word.decode("utf-8") for word in row] for row in words(tf.constant(prompts)).to_list()]
    expected = [regex.findall(keras_tokenizer.pat, whitespace_clean(basic_clean(p)).lower()) for p in prompts]
    wrong = differences(prompts, got, expected)
    assert not wrong, f"{len(wrong)}/{len(prompts)} differ, e.g. {wrong[:1]}"


def test_numeric_character_references_are_replaced_as_html_unescape_does(graph_bpe_ids, keras_tokenizer):
    numbers = [
        *range(0x000, 0x300),
        *range(0xD7F0, 0xE010),
        *range(0xFDC0, 0xFE00),
        *(plane * 0x10000 + low for plane in range(17) for low in (0xFFFD, 0xFFFE, 0xFFFF)),
        0x10FFFF, 0x110000, 0x7FFFFFFF, 10**20, 0x1F600, 0x4E00,
    ]  # fmt: skip
    prompts = []
    for number in numbers:
        prompts += [f"x&#{number};y", f"x&#x{number:X}y", f"&#X{number:08x};", f"&#{number:09d}"]
    prompts += [f"&amp;#{number};" for number in numbers[::7]]  # only the second unescape sees these
    wrong = differences(prompts, graph_bpe_ids(prompts), keras_bpe_ids(keras_tokenizer, prompts))
    assert not wrong, f"{len(wrong)}/{len(prompts)} differ, e.g. {wrong[:3]}"


def test_every_named_reference_is_replaced_as_html_unescape_does(graph_bpe_ids, keras_tokenizer):
    prompts = []
    for name in html.entities.html5:
        prompts += [f"x&{name}", f"&{name}y2 &{name}"]
        if not name.endswith(";"):  # names html.unescape also finds at the start of a longer name
            prompts += [f"&{name}x;", f"&{name}{name}", f"&amp;{name};"]
    wrong = differences(prompts, graph_bpe_ids(prompts), keras_bpe_ids(keras_tokenizer, prompts))
    assert not wrong, f"{len(wrong)}/{len(prompts)} differ, e.g. {wrong[:3]}"


@pytest.mark.parametrize(
    "prompt",
    [b"\xff", b"caf\xe9", b"ok \xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x80abc"],
)
def test_a_prompt_that_is_not_utf8_is_an_invalid_argument(graph_tokenizer, prompt):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"prompt: not valid UTF-8 at batch index:\] \[1\]"):
        graph_tokenizer(tf.constant([b"fine", prompt]))


def test_a_prompt_over_4096_bytes_is_an_invalid_argument(graph_tokenizer):
    longest = "é" * (contract.MAX_PROMPT_BYTES // 2)
    assert graph_tokenizer(tf.constant([longest])).shape == (1, contract.MAX_PROMPT_TOKENS)
    too_long = r"prompt: longer than 4096 UTF-8 bytes at batch index:\] \[0\]"
    with pytest.raises(tf.errors.InvalidArgumentError, match=too_long):
        graph_tokenizer(tf.constant([longest + "x"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="prompt"):
        graph_tokenizer(tf.constant(["a" * 10_000]))


def test_errors_name_the_input_they_come_from(graph_tokenizer):
    tokenize = tf.function(lambda prompts: graph_tokenizer.tokenize(prompts, "negative_prompt"))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[negative_prompt: not valid UTF-8"):
        tokenize(tf.constant([b"\xff"]))


def test_a_file_that_is_not_clips_vocabulary_is_refused(tmp_path):
    from sd_export.tokenizer_graph import ClipTokenizer

    vocab = tmp_path / "vocab.txt.gz"
    with gzip.open(vocab, "wt", encoding="utf-8") as file:
        file.write("#version: 0.2\n" + "a b\n" * 100)
    with pytest.raises(ValueError, match="not CLIP's BPE vocabulary"):
        ClipTokenizer(vocab)


def test_an_empty_batch_gives_no_rows(graph_tokenizer):
    rows = graph_tokenizer(tf.constant([], tf.string))
    assert rows.shape == (0, contract.MAX_PROMPT_TOKENS) and rows.dtype == tf.int32


def test_eight_prompts_take_well_under_a_second(graph_tokenizer):
    prompts = tf.constant(PROMPTS[:8])
    graph_tokenizer(prompts)
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        graph_tokenizer(prompts)
        seconds.append(time.perf_counter() - start)
    print(f"8 prompts: {min(seconds) * 1000:.1f} ms")
    assert min(seconds) < 0.25
