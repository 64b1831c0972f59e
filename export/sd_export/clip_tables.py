"""What the graph tokenizer (tokenizer_graph) is built from, computed at export time in Python: CLIP's merge ranks,
GPT-2's byte map, and SimpleTokenizer's Unicode rules (its `regex` classes, str.lower, html.unescape's exceptions)
written out as explicit character classes and tables, because the graph's own Unicode data differ."""

import gzip
import html
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import regex

from sd_export import contract

# The vocabulary's layout.
BYTE_TOKENS = 256  # ids 0..255: a byte inside a word; 256..511: the same byte ending a word ("</w>")
FIRST_MERGE_ID = 2 * BYTE_TOKENS  # the token made by merge number r has id 512 + r ...
SPECIAL_TOKENS = {"<|startoftext|>": contract.START_TOKEN, "<|endoftext|>": contract.END_TOKEN}  # the last ids
NUM_MERGES = contract.VOCAB_SIZE - FIRST_MERGE_ID - len(SPECIAL_TOKENS)  # ... of 48 894
PAIR_KEY_BASE = contract.VOCAB_SIZE  # pair (a, b) is looked up as a * base + b

MAX_CODE_POINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)
NO_CHARACTER = -2  # html.unescape drops some numeric references (-1 is the tables' "not found")

# SimpleTokenizer's word pattern, in its order: special tokens, contractions, letters, one digit, other symbols.
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def write_merge_ranks(vocab_path, path):
    """CLIP's merges as `pair key<TAB>left right` lines in rank order; a pair key is left id * VOCAB_SIZE + right id."""
    lines = gzip.open(vocab_path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    byte_symbols = list(bytes_to_unicode().values())
    vocab = byte_symbols + [symbol + "</w>" for symbol in byte_symbols] + ["".join(merge) for merge in merges]
    vocab += list(SPECIAL_TOKENS)
    ids = {token: index for index, token in enumerate(vocab)}
    # Merged ids are 512 + rank only if no token repeats, and every merge must join two known tokens.
    consistent = len(ids) == len(vocab) == contract.VOCAB_SIZE and all(len(merge) == 2 for merge in merges)
    if not consistent or not all(left in ids and right in ids for left, right in merges):
        raise ValueError(f"{vocab_path} is not CLIP's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz)")
    with open(path, "w", encoding="utf-8") as file:
        for left, right in merges:
            file.write(f"{ids[left] * PAIR_KEY_BASE + ids[right]}\t{left} {right}\n")
    return path


@lru_cache
def bytes_to_unicode():
    """GPT-2's reversible byte -> character map: printable Latin-1 bytes stand for themselves, the rest for 256+."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return {
        **{byte: chr(byte) for byte in printable},
        **{byte: chr(256 + index) for index, byte in enumerate(others)},
    }


def byte_ids():
    """Byte value -> its token id (the byte's position in bytes_to_unicode's order)."""
    order = list(bytes_to_unicode())
    ids = np.zeros(256, np.int32)
    ids[order] = np.arange(256, dtype=np.int32)
    return ids


def numeric_reference_exceptions():
    """Numbers html.unescape does not turn into chr(number) -> its code point, or NO_CHARACTER."""
    special = set(html._invalid_charrefs) | set(html._invalid_codepoints)  # noqa: SLF001 (no public list)
    exceptions = {}
    for number in sorted(special):
        replacement = html.unescape(f"&#{number};")
        exceptions[number] = ord(replacement) if replacement else NO_CHARACTER
    return exceptions


@dataclass(frozen=True)  # not a tuple or dict, which tf.Module would wrap and track
class _Patterns:
    whitespace_run: str  # what whitespace_clean replaces by one space
    outer_space: str  # what str.strip removes
    word: str  # one word of SimpleTokenizer's findall
    unmatched: str  # characters besides spaces that no word holds ("" if none)


@dataclass(frozen=True)
class _UnicodeTables:
    patterns: _Patterns
    lowercase: dict  # code point -> its one-character lowercase
    multi_char_lowercase: dict  # character -> its longer lowercase
    case_ignorable_bounds: np.ndarray  # _range_bounds of Case_Ignorable
    cased_bounds: np.ndarray  # _range_bounds of Cased characters that are not Case_Ignorable


@lru_cache
def unicode_tables():
    code_points = np.array([c for c in range(MAX_CODE_POINT + 1) if not SURROGATES[0] <= c <= SURROGATES[1]])
    return _UnicodeTables(_text_patterns(code_points), *_lowercase_tables(code_points))


def _text_patterns(code_points):
    """RE2 patterns with SimpleTokenizer's `regex` classes written out character by character."""
    every_character = "".join(map(chr, code_points))

    def matching(pattern, flags=regex.IGNORECASE):
        return code_points[[match.start() for match in regex.finditer(pattern, every_character, flags)]]

    def caseless(literal):
        return "".join(_re2_class(matching(regex.escape(char))) for char in literal)

    whitespace = matching(r"\s", flags=0)  # `regex`'s \s, which whitespace_clean collapses
    strip_class = _re2_class([c for c in code_points if chr(c).isspace()])  # what str.strip removes
    letters, numbers, others = (matching(pattern) for pattern in (r"[\p{L}]", r"[\p{N}]", r"[^\s\p{L}\p{N}]"))
    in_a_class = np.zeros(MAX_CODE_POINT + 1, bool)
    in_a_class[np.concatenate([letters, numbers, others, whitespace])] = True
    unmatched = code_points[~in_a_class[code_points]]
    literals = [*SPECIAL_TOKENS, *CONTRACTIONS]
    if np.isin(unmatched, matching("[" + regex.escape("".join(literals)) + "]")).any():
        raise ValueError("a special token or contraction holds a character that no word class has")
    word = "|".join(
        [caseless(literal) for literal in literals]
        + [_re2_class(letters) + "+", _re2_class(numbers), _re2_class(others) + "+"]
    )
    return _Patterns(
        whitespace_run=_re2_class(whitespace) + "+",
        outer_space=f"^{strip_class}+|{strip_class}+$",
        word=word,
        unmatched=_re2_class(unmatched) if unmatched.size else "",
    )


def _lowercase_tables(code_points):
    """str.lower as tables: one-character mappings, longer ones, and the properties of its Final_Sigma test."""
    lowercase, multi_char_lowercase = {}, {}
    ignorable, cased = [], []
    for code_point in code_points:
        char = chr(code_point)
        lower = char.lower()
        if len(lower) > 1:
            multi_char_lowercase[char] = lower
        elif lower != char:
            lowercase[int(code_point)] = ord(lower)
        if unicodedata.category(char) in ("Cn", "Co"):
            continue  # unassigned and private-use characters are neither cased nor case-ignorable
        # Final_Sigma reads the Cased and Case_Ignorable properties, which Python does not expose: probe them
        # through str.lower itself. Σ after "Α" and a case-ignorable or cased character is final, ...
        ignorable_or_cased = ("Α" + char + "Σ").lower()[-1] == "ς"
        # ... and so is Σ followed by a case-ignorable or uncased one.
        ignorable_or_uncased = ("ΑΣ" + char).lower()[1] == "ς"
        if ignorable_or_cased and ignorable_or_uncased:
            ignorable.append(code_point)
        elif ignorable_or_cased:
            cased.append(code_point)
    for upper, lower in multi_char_lowercase.items():
        # These are lowercased before the Final_Sigma test: a cased start and an ignorable rest keep it the same.
        if ord(lower[0]) not in cased or any(ord(char) not in ignorable for char in lower[1:]):
            raise ValueError(f"lowercase {upper!r} -> {lower!r} changes the Final_Sigma context")
    return lowercase, multi_char_lowercase, _range_bounds(ignorable), _range_bounds(cased)


def _ranges(code_points):
    """Sorted code points -> [(first, last), ...] runs."""
    runs = []
    for code_point in code_points:
        if runs and runs[-1][1] == code_point - 1:
            runs[-1][1] = code_point
        else:
            runs.append([code_point, code_point])
    return runs


def _re2_class(code_points):
    parts = [f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in _ranges(code_points)]
    return "[" + "".join(parts) + "]"


def _range_bounds(code_points):
    """[first0, last0 + 1, first1, last1 + 1, ...]: a code point is inside iff an odd number of bounds are <= it."""
    return np.array([bound for a, b in _ranges(sorted(code_points)) for bound in (a, b + 1)], np.int32)
