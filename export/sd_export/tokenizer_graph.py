"""CLIP's BPE tokenizer as TensorFlow graph ops, for a SavedModel that stock tensorflow_model_server runs.

KerasCV's SimpleTokenizer is Python: html.unescape twice, `regex`'s \\s+ collapsed to one space, strip, str.lower,
a `regex` findall that splits words, GPT-2's byte-to-unicode mapping and BPE merges by rank. The model server runs no
Python, so `ClipTokenizer` rebuilds each step from core TensorFlow ops (RE2 regexes, hash tables, a while loop) and
gives the same ids.

Every Unicode table SimpleTokenizer depends on is read at export time from the libraries it uses (`regex`, `str`,
`html`; see clip_tables) and written into the graph as explicit character classes and small lookup tables, because
the graph's own Unicode data differ: RE2's \\s is ASCII only and its \\p{L} follows an older Unicode than `regex`; tf.strings.lower
(ICU) misses Unicode 14 mappings, depends on the process locale and stops at a NUL byte.

The BPE merge list (48 894 pairs) is a SavedModel asset read by a hash table, not a constant.
"""

import html
import html.entities
import tempfile
from pathlib import Path

import numpy as np
import regex
import tensorflow as tf

from sd_export import contract
from sd_export.clip_tables import (
    BYTE_TOKENS,
    FIRST_MERGE_ID,
    MAX_CODE_POINT,
    NO_CHARACTER,
    PAIR_KEY_BASE,
    SPECIAL_TOKENS,
    SURROGATES,
    byte_ids,
    numeric_reference_exceptions,
    unicode_tables,
    write_merge_ranks,
)

MAX_BPE_TOKENS = contract.MAX_PROMPT_TOKENS - 2  # room left by the start and end tokens
MERGES_ASSET = "clip_bpe_merges.tsv"

_NO_RANK = np.iinfo(np.int32).max

# Python's html.unescape: the references it replaces (Lib/html/__init__.py, `_charref`).
_HTML_REFERENCE = r"&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)"
_NUMERIC_REFERENCE = r"&#(?:[0-9]+|[xX][0-9a-fA-F]+);?"
_SIGNIFICANT_DIGITS = r"^&#[xX]?0*|;$"  # what is left is the number without leading zeros
_MAX_DIGITS = {10: 7, 16: 6}  # longer numbers exceed U+10FFFF, which html.unescape replaces by U+FFFD
_REPLACEMENT_CHARACTER = 0xFFFD


# Bytes that valid UTF-8 never holds: markers between pieces of a string, and stand-ins for special-token words.
_SEPARATOR = b"\xff"
_SPECIAL_STAND_INS = {"<|startoftext|>": b"\xfe", "<|endoftext|>": b"\xff"}

_CAPITAL_SIGMA, _FINAL_SIGMA = 0x3A3, 0x3C2


class ClipTokenizer(tf.Module):
    """Prompts (string [B]) -> CLIP token ids (int32 [B, 77]) as KerasCV's SimpleTokenizer makes them.

    Each row is the start token, the BPE ids (at most 75: a longer prompt keeps the first 75) and the end token,
    padded with the end token. Prompts longer than MAX_PROMPT_BYTES or not valid UTF-8 fail with InvalidArgument.

    Call `tokenize(prompts, input_name)` inside another tf.function (e.g. text_to_image's signature), or the module
    itself, a tf.function over string [None]. Keep the object alive until the SavedModel is written: the merge list
    it reads is a file in a temporary folder until tf.saved_model.save copies it into assets/.
    """

    def __init__(self, vocab_path, name="clip_tokenizer"):
        super().__init__(name=name)
        self._asset_folder = tempfile.TemporaryDirectory(prefix="clip_tokenizer_")
        merges_path = write_merge_ranks(vocab_path, Path(self._asset_folder.name) / MERGES_ASSET)
        self._merge_ranks = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                str(merges_path),
                key_dtype=tf.int64,
                key_index=0,
                value_dtype=tf.int64,
                value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
                delimiter="\t",
            ),
            default_value=-1,
        )
        self._unicode = unicode_tables()
        self._lowercase = _int_table(self._unicode.lowercase)
        self._entities = _string_table(html.entities.html5)
        # Names html.unescape also finds as the start of a longer name: the ones without ';'.
        self._prefix_entities = _string_table(
            {name: value for name, value in html.entities.html5.items() if not name.endswith(";")}
        )
        self._longest_prefix_entity = max(len(name) for name in html.entities.html5 if not name.endswith(";"))
        self._numeric_exceptions = _int_table(numeric_reference_exceptions())
        self.byte_ids = byte_ids()

    def __call__(self, prompt):
        """tokenize() as a tf.function over string [None], traced once and kept out of tf.Module's tracking: a tracked
        tf.function would be saved with every SavedModel that holds the tokenizer, never run there."""
        if "_traced" not in self.__dict__:
            signature = [tf.TensorSpec([None], tf.string, name="prompt")]
            object.__setattr__(self, "_traced", tf.function(self.tokenize, input_signature=signature))
        return self._traced(prompt)

    def tokenize(self, prompts, input_name="prompt"):
        """string [B] -> int32 [B, 77]: start token, BPE ids cut to 75, end token, end-token padding.

        input_name starts the error messages (e.g. "negative_prompt: not valid UTF-8 at batch index: [1]")."""
        ids = self.bpe_ids(prompts, input_name, max_words=MAX_BPE_TOKENS)[:, :MAX_BPE_TOKENS]
        batch = ids.nrows()
        start = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], contract.START_TOKEN))
        end = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], contract.END_TOKEN))
        tokens = tf.concat([start, ids, end], axis=1)
        return tokens.to_tensor(default_value=contract.END_TOKEN, shape=[None, contract.MAX_PROMPT_TOKENS])

    def bpe_ids(self, prompts, input_name="prompt", max_words=None):
        """string [B] -> int32 ragged [B, None]: every BPE id of each prompt, without start and end tokens.

        max_words keeps only a prompt's first words; each word gives at least one id, so 75 words are enough for
        75 ids."""
        prompts = self._checked(prompts, input_name)
        words = self.words(prompts)
        if max_words is not None:
            words = words[:, :max_words]
        unique_words, occurrence = tf.unique(words.flat_values)
        word_ids = tf.gather(self._bpe(unique_words), occurrence)
        return words.with_flat_values(word_ids).merge_dims(1, 2)

    def words(self, prompts):
        """string [B] -> ragged [B, None]: what SimpleTokenizer's findall returns after cleaning and lowercasing."""
        text = self._unescape_html(self._unescape_html(prompts))
        patterns = self._unicode.patterns
        text = tf.strings.regex_replace(text, patterns.whitespace_run, " ")
        text = tf.strings.regex_replace(text, patterns.outer_space, "")
        text = self._lowercase_text(text)
        # No word holds a space or a character of `unmatched` (with IGNORECASE, `regex` puts U+0345 in no class):
        # the words of a text are the words of its chunks between them, and a chunk is its words end to end.
        if patterns.unmatched:
            text = tf.strings.regex_replace(text, patterns.unmatched, " ")
        chunks = tf.strings.split(text, sep=" ")
        marked = tf.strings.regex_replace(chunks.flat_values, patterns.word, b"\\0" + _SEPARATOR)
        words = chunks.with_flat_values(tf.strings.split(marked, sep=_SEPARATOR)).merge_dims(1, 2)
        return tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)

    # -- input checks

    def _checked(self, prompts, input_name):
        """prompts, once every string has at most MAX_PROMPT_BYTES bytes and is valid UTF-8 (else InvalidArgument
        "<input_name>: ... at batch index: [...]")."""
        prompts = tf.convert_to_tensor(prompts, tf.string)
        fits = tf.strings.length(prompts) <= contract.MAX_PROMPT_BYTES
        too_long = _assert_all(fits, f"{input_name}: longer than {contract.MAX_PROMPT_BYTES} UTF-8 bytes")
        with tf.control_dependencies([too_long]):
            # Decoding replaces every invalid sequence, so a string survives the round trip iff it is valid UTF-8.
            round_trip = tf.strings.unicode_transcode(
                prompts, "UTF-8", "UTF-8", errors="replace", replacement_char=_REPLACEMENT_CHARACTER
            )
            not_utf8 = _assert_all(tf.equal(round_trip, prompts), f"{input_name}: not valid UTF-8")
        with tf.control_dependencies([not_utf8]):
            return tf.identity(prompts)

    # -- html.unescape

    def _unescape_html(self, text):
        """One html.unescape: every character reference, replaced left to right, the replacements not rescanned."""
        marked = tf.strings.regex_replace(text, _HTML_REFERENCE, _SEPARATOR + b"\\0" + _SEPARATOR)
        pieces = tf.strings.split(marked, sep=_SEPARATOR)
        # Split this way, references are the pieces at odd positions of each row.
        position = tf.range(tf.size(pieces.flat_values, out_type=tf.int64)) - tf.gather(
            pieces.row_starts(), pieces.value_rowids()
        )
        is_reference = position % 2 == 1
        flat = pieces.flat_values
        text_index = tf.cast(tf.where(~is_reference)[:, 0], tf.int32)
        reference_index = tf.cast(tf.where(is_reference)[:, 0], tf.int32)
        replaced = self._replace_references(tf.gather(flat, reference_index))
        flat = tf.dynamic_stitch([text_index, reference_index], [tf.gather(flat, text_index), replaced])
        return tf.strings.reduce_join(pieces.with_flat_values(flat), axis=1)

    def _replace_references(self, references):
        numeric = tf.strings.regex_full_match(references, _NUMERIC_REFERENCE)
        return tf.where(numeric, self._numeric_references(references), self._named_references(references))

    def _numeric_references(self, references):
        """&#NNN; and &#xHH; (';' optional) -> the character, or what html.unescape puts for invalid numbers."""
        is_hex = tf.strings.regex_full_match(references, "&#[xX].*")
        base = tf.where(is_hex, 16, 10)
        digits = tf.strings.regex_replace(references, _SIGNIFICANT_DIGITS, "")
        too_big = tf.strings.length(digits) > tf.where(is_hex, _MAX_DIGITS[16], _MAX_DIGITS[10])
        digits = tf.strings.substr(digits, 0, _MAX_DIGITS[10])  # enough for any number not too big
        number = _parse_number(digits, base)
        exception = self._numeric_exceptions.lookup(number)
        invalid = too_big | (number > MAX_CODE_POINT) | ((number >= SURROGATES[0]) & (number <= SURROGATES[1]))
        replacement = tf.constant(_REPLACEMENT_CHARACTER, tf.int64)
        code_point = tf.where(invalid, replacement, tf.where(exception == -1, number, exception))
        characters = tf.RaggedTensor.from_tensor(code_point[:, None], padding=NO_CHARACTER)
        return tf.strings.unicode_encode(tf.cast(characters, tf.int32), "UTF-8")

    def _named_references(self, references):
        """&name; -> its text; else the longest name without ';' it starts with, then the rest; else unchanged."""
        name = _suffix(references, 1)
        result = references
        for length in range(2, self._longest_prefix_entity + 1):  # longer prefixes replace shorter ones
            prefix_text = self._prefix_entities.lookup(tf.strings.substr(name, 0, length))
            found = (prefix_text != _SEPARATOR) & (tf.strings.length(name) > length)
            rest = _suffix(name, length)
            result = tf.where(found, prefix_text + rest, result)
        text = self._entities.lookup(name)
        return tf.where(text != _SEPARATOR, text, result)

    # -- str.lower

    def _lowercase_text(self, text):
        for upper, lower in self._unicode.multi_char_lowercase.items():
            text = tf.strings.regex_replace(text, regex.escape(upper), lower)
        characters = tf.strings.unicode_decode(text, "UTF-8")
        code_points = characters.flat_values
        lowered = tf.cast(self._lowercase.lookup(tf.cast(code_points, tf.int64)), tf.int32)
        lowered = tf.where(lowered == -1, code_points, lowered)
        final = (code_points == _CAPITAL_SIGMA) & self._final_sigma_context(characters)
        lowered = tf.where(final, _FINAL_SIGMA, lowered)
        return tf.strings.unicode_encode(characters.with_flat_values(lowered), "UTF-8")

    def _final_sigma_context(self, characters):
        """True where str.lower writes Σ as ς: after a cased letter and not before one, skipping case-ignorables."""
        code_points = characters.flat_values
        count = tf.size(code_points)
        ignorable = _in_ranges(code_points, self._unicode.case_ignorable_bounds)
        cased = tf.concat([_in_ranges(code_points, self._unicode.cased_bounds) & ~ignorable, [False]], axis=0)
        # Characters that stop the scan, plus a sentinel at `count` that is not cased.
        stops = tf.concat([tf.cast(tf.where(~ignorable)[:, 0], tf.int32), [count]], axis=0)
        num_stops = tf.size(stops) - 1
        stops_before = tf.cumsum(tf.cast(~ignorable, tf.int32), exclusive=True)
        previous = tf.gather(stops, tf.where(stops_before > 0, stops_before - 1, num_stops))
        following = tf.gather(stops, stops_before + tf.cast(~ignorable, tf.int32))
        row = characters.value_rowids()
        row_start = tf.cast(tf.gather(characters.row_starts(), row), tf.int32)
        row_limit = tf.cast(tf.gather(characters.row_limits(), row), tf.int32)
        cased_before = (previous >= row_start) & tf.gather(cased, previous)
        cased_after = (following < row_limit) & tf.gather(cased, following)
        return cased_before & ~cased_after

    # -- BPE

    def _bpe(self, words):
        """Unique words (string [W]) -> their BPE ids (int32 ragged [W, None])."""
        num_words = tf.size(words)
        for token, stand_in in _SPECIAL_STAND_INS.items():  # one byte, so one symbol that no pair holds
            words = tf.where(words == token, stand_in, words)
        lengths = tf.strings.length(words)
        word_bytes = tf.cast(tf.io.decode_raw(tf.strings.reduce_join(words), tf.uint8), tf.int32)
        word_of = tf.repeat(tf.range(num_words), lengths)
        ends_word = tf.concat([word_of[1:] != word_of[:-1], tf.ones([tf.minimum(tf.size(word_of), 1)], tf.bool)], 0)
        ids = tf.gather(self.byte_ids, word_bytes) + tf.where(ends_word, BYTE_TOKENS, 0)
        for token, stand_in in _SPECIAL_STAND_INS.items():
            ids = tf.where(word_bytes == stand_in[0], SPECIAL_TOKENS[token], ids)

        def merge_once(ids, word_of, _):
            ids, merged = self._merge_lowest_pairs(ids, word_of, num_words)
            keep = ~tf.concat([[False], merged], axis=0)
            return tf.boolean_mask(ids, keep), tf.boolean_mask(word_of, keep), tf.reduce_any(merged)

        ids, word_of, _ = tf.while_loop(
            lambda ids, word_of, merging: merging,
            merge_once,
            (ids, word_of, tf.size(ids) > 1),  # fewer symbols hold no pair
            shape_invariants=(tf.TensorShape([None]), tf.TensorShape([None]), tf.TensorShape([])),
        )
        return tf.RaggedTensor.from_value_rowids(ids, tf.cast(word_of, tf.int64), nrows=tf.cast(num_words, tf.int64))

    def _merge_lowest_pairs(self, ids, word_of, num_words):
        """In each word, merge every occurrence of its lowest-ranked pair, left to right as SimpleTokenizer.bpe does.

        Returns ids with each merged pair's left id replaced by the merged token, and for each position but the
        last whether a merge starts there (its right neighbour then goes)."""
        left, right = ids[:-1], ids[1:]
        same_word = word_of[:-1] == word_of[1:]
        keys = tf.cast(left, tf.int64) * PAIR_KEY_BASE + tf.cast(right, tf.int64)
        ranks = tf.cast(self._merge_ranks.lookup(keys), tf.int32)
        ranks = tf.where(same_word & (ranks >= 0), ranks, _NO_RANK)
        word_lowest = tf.math.unsorted_segment_min(ranks, word_of[:-1], num_words)
        lowest = (ranks == tf.gather(word_lowest, word_of[:-1])) & (ranks != _NO_RANK)
        # A pair (x, x) can occur at consecutive positions ("x x x"): only every other one, from the left, merges.
        others = tf.concat([tf.cast(tf.where(~lowest)[:, 0], tf.int32), [-1]], axis=0)
        others_before = tf.cumsum(tf.cast(~lowest, tf.int32), exclusive=True)
        last_other = tf.gather(others, tf.where(others_before > 0, others_before - 1, tf.size(others) - 1))
        merged = lowest & ((tf.range(tf.size(lowest)) - last_other) % 2 == 1)
        merged_ids = tf.where(merged, FIRST_MERGE_ID + ranks, left)
        return tf.concat([merged_ids, ids[-1:]], axis=0), merged


def _assert_all(condition, message):
    """An Assert op that fails with "<message> at batch index: [i, ...]" unless condition [B] holds everywhere."""
    failing = tf.where(~condition)[:, 0]
    return tf.debugging.Assert(tf.reduce_all(condition), [message + " at batch index:", failing], summarize=10)


def _in_ranges(code_points, bounds):
    if bounds.size == 0:
        return tf.zeros_like(code_points, tf.bool)
    index = tf.searchsorted(bounds[None, :], code_points[None, :], side="right")[0]
    return index % 2 == 1


def _suffix(strings, start):
    """strings[start:] in bytes ("" past the end, where tf.strings.substr fails)."""
    lengths = tf.strings.length(strings)
    return tf.strings.substr(strings, tf.minimum(start, lengths), lengths)


def _parse_number(digits, base):
    """Decimal or hex digit strings (string [N], base int32 [N]) -> int64 [N]; "" -> 0."""
    characters = tf.strings.unicode_decode(digits, "UTF-8")
    code = characters.flat_values
    value = tf.where(code <= ord("9"), code - ord("0"), tf.bitwise.bitwise_or(code, 0x20) - ord("a") + 10)
    row = characters.value_rowids()
    position = tf.range(tf.size(code, out_type=tf.int64)) - tf.gather(characters.row_starts(), row)
    place = tf.gather(characters.row_lengths(), row) - 1 - position
    weight = tf.pow(tf.cast(tf.gather(base, row), tf.int64), place)
    return tf.math.unsorted_segment_sum(tf.cast(value, tf.int64) * weight, row, tf.size(digits, out_type=tf.int64))


def _int_table(mapping):
    keys = np.array(list(mapping), np.int64)
    values = np.array(list(mapping.values()), np.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)


def _string_table(mapping):
    """name -> text; a miss gives _SEPARATOR, which no text holds."""
    keys = tf.constant([name.encode() for name in mapping], tf.string)
    values = tf.constant([text.encode() for text in mapping.values()], tf.string)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=_SEPARATOR)
