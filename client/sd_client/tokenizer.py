"""CLIP's byte-pair tokenizer, giving the ids KerasCV's SimpleTokenizer gives for Stable Diffusion v1.x.

Same steps as CLIP's tokenizer: unescape HTML twice, collapse whitespace, lower-case, split with CLIP's pattern, map
each UTF-8 byte to a printable character, then merge pairs by rank from bpe_simple_vocab_16e6.txt.gz.
tests/client/test_client_tokenizer.py checks the ids against keras_cv's SimpleTokenizer on tests/prompt_corpus.py.
"""

import functools
import gzip
import hashlib
import html
import os
import pathlib
import warnings

import numpy as np
import regex  # CLIP's pattern needs \p{L}/\p{N}, and KerasCV's Unicode tables: the stdlib `re` has neither

from . import contract
from .errors import PromptTooLong, ValidationError, VocabularyError

VOCAB_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
VOCAB_ENV = "SD_CLIENT_CLIP_VOCAB"
# OpenAI CLIP's vocabulary (MIT licence), shipped inside the package so the client works offline.
SHIPPED_VOCAB = pathlib.Path(__file__).parent / "clip" / VOCAB_FILENAME

START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
_WORD_END = "</w>"
# CLIP's vocabulary: 256 byte symbols, the same with </w>, the first 48 894 merges, then the two special tokens.
_MERGE_COUNT = contract.VOCAB_SIZE - 2 * 256 - 2

_PATTERN = regex.compile(
    regex.escape(START_OF_TEXT) + "|" + regex.escape(END_OF_TEXT)
    + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_WHITESPACE = regex.compile(r"\s+")

# KerasCV's unconditional row (the "no negative prompt" context): the start token, then end/padding tokens.
UNCONDITIONAL_TOKENS = (contract.START_TOKEN,) + (contract.END_TOKEN,) * (contract.MAX_PROMPT_TOKENS - 1)


@functools.lru_cache(maxsize=1)
def byte_symbols():
    """byte -> printable character, the table GPT-2 and CLIP use so that BPE never sees whitespace or control bytes.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes get the characters from U+0100 up, in byte order.
    The table's order (printable bytes first) is the order of the first 256 vocabulary ids.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in printable}
    others = (byte for byte in range(256) if byte not in table)
    for offset, byte in enumerate(others):
        table[byte] = chr(256 + offset)
    return table


def normalize(text):
    """CLIP's text cleaning: HTML entities unescaped twice (as CLIP does), whitespace runs collapsed, lower case."""
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


class ClipTokenizer:
    """Prompt -> int32 row of 77 CLIP ids: start token, BPE ids, end token, padded with the end token."""

    def __init__(self, vocab_path=None):
        merges = _read_merges(resolve_vocabulary(vocab_path))
        symbols = list(byte_symbols().values())
        vocab = symbols + [s + _WORD_END for s in symbols] + ["".join(m) for m in merges] + [START_OF_TEXT, END_OF_TEXT]
        self._ids = {token: i for i, token in enumerate(vocab)}
        self._tokens = vocab
        self._merge_rank = {pair: rank for rank, pair in enumerate(merges)}
        self._byte_symbol = byte_symbols()
        self._symbol_byte = {s: b for b, s in self._byte_symbol.items()}
        self._bpe = functools.lru_cache(maxsize=65536)(self._bpe_uncached)

    def encode(self, text):
        """All ids of a prompt, start and end token included, not cut or padded (KerasCV's `encode`)."""
        ids = [contract.START_TOKEN]
        for piece in _PATTERN.findall(normalize(text)):
            if piece in (START_OF_TEXT, END_OF_TEXT):
                ids.append(self._ids[piece])  # the special tokens written in a prompt stay special, as in KerasCV
                continue
            word = "".join(self._byte_symbol[b] for b in piece.encode("utf-8"))
            ids.extend(self._ids[symbol] for symbol in self._bpe(word))
        ids.append(contract.END_TOKEN)
        return ids

    def decode(self, ids):
        """Text of ids (for messages): symbols back to bytes, word ends back to spaces."""
        symbols = "".join(self._tokens[i] for i in ids)
        data = bytes(self._symbol_byte[c] for c in symbols)
        return data.decode("utf-8", errors="replace").replace(_WORD_END, " ").strip()

    def tokenize(self, prompt, *, strict=False):
        """One padded row of 77 int32 ids. Over 77 ids: cut (end token kept) with a warning, or PromptTooLong."""
        check_prompt(prompt)
        ids = self.encode(prompt)
        limit = contract.MAX_PROMPT_TOKENS
        if len(ids) > limit:
            dropped = self.decode(ids[limit - 1 : -1])
            if len(dropped) > _SHOWN_CHARS:
                dropped = dropped[:_SHOWN_CHARS] + "..."
            message = (
                f"prompt is {len(ids)} tokens, CLIP reads {limit} (start and end token included): "
                f"dropped {len(ids) - limit} tokens: {dropped!r}"
            )
            if strict:
                raise PromptTooLong(message)
            warnings.warn(message, PromptTruncatedWarning, stacklevel=2)
            ids = ids[: limit - 1] + [contract.END_TOKEN]
        ids += [contract.END_TOKEN] * (limit - len(ids))
        return np.asarray(ids, dtype=np.int32)

    def tokenize_batch(self, prompts, *, strict=False):
        """[len(prompts), 77] int32; None stands for "no negative prompt" (KerasCV's unconditional row)."""
        rows = [
            np.asarray(UNCONDITIONAL_TOKENS, np.int32) if p is None else self.tokenize(p, strict=strict)
            for p in prompts
        ]
        return np.stack(rows).reshape(len(rows), contract.MAX_PROMPT_TOKENS)

    def _bpe_uncached(self, word):
        """Symbols of one word after merging, lowest merge rank first, until no known pair is left."""
        parts = list(word[:-1]) + [word[-1] + _WORD_END]
        while len(parts) > 1:
            pairs = set(zip(parts, parts[1:]))
            best = min(pairs, key=lambda pair: self._merge_rank.get(pair, _NO_RANK))
            if best not in self._merge_rank:
                break
            parts = _merge(parts, best)
        return tuple(parts)


_NO_RANK = float("inf")
_SHOWN_CHARS = 200  # of the dropped text, in the warning


class PromptTruncatedWarning(UserWarning):
    """A prompt was cut to CLIP's 77 tokens."""


def _merge(parts, pair):
    """parts with every adjacent occurrence of pair joined, left to right."""
    merged = []
    i = 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
            merged.append(parts[i] + parts[i + 1])
            i += 2
        else:
            merged.append(parts[i])
            i += 1
    return merged


def check_prompt(prompt):
    """A prompt must be a str of at most MAX_PROMPT_BYTES UTF-8 bytes (the servers' limit too)."""
    if not isinstance(prompt, str):
        raise ValidationError(f"a prompt must be a str, got {type(prompt).__name__}")
    size = len(prompt.encode("utf-8", errors="surrogatepass"))
    if size > contract.MAX_PROMPT_BYTES:
        raise PromptTooLong(f"prompt is {size} UTF-8 bytes, the limit is {contract.MAX_PROMPT_BYTES}")


def _read_merges(path):
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise VocabularyError(f"cannot read the CLIP vocabulary {path}: {e}") from e
    merges = [tuple(line.split()) for line in lines[1 : 1 + _MERGE_COUNT]]  # line 0 is a version header
    if len(merges) != _MERGE_COUNT or any(len(m) != 2 for m in merges):
        raise VocabularyError(f"{path} is not CLIP's BPE vocabulary (expected {_MERGE_COUNT} merge lines)")
    return merges


def resolve_vocabulary(path=None):
    """The vocabulary file: an explicit path, else $SD_CLIENT_CLIP_VOCAB, else the copy shipped with the client."""
    for given, source in ((path, "the vocab_path argument"), (os.environ.get(VOCAB_ENV), f"${VOCAB_ENV}")):
        if given:
            given = pathlib.Path(given).expanduser()
            if not given.is_file():
                raise VocabularyError(f"CLIP vocabulary {given} (from {source}) does not exist")
            return given
    return SHIPPED_VOCAB


def sha256_of(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
