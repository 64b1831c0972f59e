"""Prompts for tokenizer parity: the client's tokenizer and the in-graph one must equal KerasCV's SimpleTokenizer."""

PROMPTS = [
    "",
    " ",
    "a photograph of an astronaut riding a horse",
    "Yoda",
    "A BEAUTIFUL horse running through a FIELD",
    "   leading and trailing   spaces   ",
    "tabs\tand\nnewlines\r\nand\u00a0no-break\u2003em\u3000ideographic spaces",
    "don't, can't, won't, it's, we're, they've, I'm, you'll, he'd",
    "DON'T SHOUT'S 'quoted' ''",
    "numbers 0 1 42 1234567890 3.14159 1,000,000 2nd 3rd 4th",
    "punctuation!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((())) [[[]]] {{{}}} <<<>>>",
    "mixed-case CamelCase snake_case kebab-case dot.case",
    "東京の夜景、ネオンの光",
    "一只可爱的猫坐在窗台上",
    "서울의 거리 풍경",
    "emoji 🐱🚀🔥 and 👨‍👩‍👧‍👦 family 🏳️‍🌈",
    "café naïve résumé façade jalapeño Ångström",
    "Ελληνικά και русский текст",
    "عربي و עברית",
    "hindi देवनागरी script",
    "combining e\u0301 vs \u00e9",
    "fish &amp; chips &lt;3 &gt; &quot;quoted&quot; it&#39;s",
    "&nbsp;nbsp&nbsp; &#169; &#xA9; &copy; &eacute; &amp;amp; &unknown;",
    "&#65;&#x42;C &#128512;",
    "<|startoftext|> special <|endoftext|> tokens",
    "url https://example.com/path?q=1&x=2#frag",
    "email someone@example.org",
    "trending on artstation, 4k, highly detailed, octane render, by greg rutkowski",
    "(masterpiece:1.2), [[best quality]], {ultra-detailed}",
    "a" * 300,
    "word " * 100,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "ALL CAPS ÉÀÜ ß ẞ",
    "zero\u200bwidth joiner\u200d",
    "\u2028line separator\u2029paragraph",
    "x",
    "!",
    "1",
    # HTML references as html.unescape (run twice by CLIP) reads them: legacy names without ';', longest-prefix
    # names, invalid numbers, references that only appear after the first pass.
    "&AMP &amp &ampx &copy2024 &notit; &notin; &frac12x &Sigma;&sigmaf; &ThickSpace;x &NewLine;&Tab;",
    "&amp;amp; &amp;lt;3 &amp;#39;s &amp;#x41; &#38;amp; &&amp; & ; &; &#; &#x; &#xg; &#12abc &#X41",
    "&#0; &#13; &#128; &#x80; &#x9F; &#11; &#xD800; &#xDFFF; &#1114111; &#1114112; &#99999999999999999999;",
    "&#x10FFFF; &#x110000; &#0000000065; &#x0000041; &#65534; &#xFDD0; &#x1FFFF; &#10;&#x2028;&#160;",
    "&" + "a" * 40 + "; &unknownentitywithaverylongnamethatgoeson; &caf\u00e9; &\u00e9cole;",
    # Final sigma, dotted capital I, long s and Kelvin sign (case folding in the word pattern).
    "ΟΔΥΣΣΕΥΣ ΣΑΣ Σ ΑΣ' ΑΣ\u0345 İSTANBUL 'ſ <|ſtartoftext|> \u212a \u0345",
]


def random_prompts(count, seed, words):
    """`count` seeded prompts mixing `words` (e.g. decoded vocabulary tokens) with characters and fragments that
    exercise every cleaning step: HTML references, Unicode whitespace, case, contractions, special tokens, scripts,
    emoji, combining marks and code points from the whole range. Each has at most 4096 UTF-8 bytes."""
    import random

    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        length = rng.choice((1, 3, 10, 30, 90, 600))  # from 90 pieces on, prompts are longer than 77 tokens
        pieces = []
        for _ in range(rng.randint(1, length)):
            pieces.append(_random_piece(rng, words))
            pieces.append(rng.choice(_SEPARATORS))
        prompts.append("".join(pieces).encode("utf-8")[:4096].decode("utf-8", errors="ignore"))
    return prompts


_SEPARATORS = [" "] * 12 + ["", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2003", "\x1c", "\x85"] + [",", ", "]
_FRAGMENTS = [
    "&amp;", "&AMP", "&amp", "&lt;", "&gt;", "&quot;", "&#39;", "&#x27;", "&nbsp;", "&nbsp", "&copy;", "&eacute;",
    "&notin;", "&notit;", "&frac12", "&amp;amp;", "&amp;#39;", "&#65;", "&#x1F600;", "&#0;", "&#128;", "&#xD800;",
    "&#1114112;", "&#11;", "&", "&#", "&#x", ";", "'s", "'S", "'ll", "'RE", "'ſ", "''", "n't", "<|startoftext|>",
    "<|ENDOFTEXT|>", "<|endoftext|>>", "<|endoftext", "ΣΑΣ", "ΟΔΥΣΣΕΥΣ", "ΑΣ", "İ", "ẞ", "ﬁ", "\u212a", "\u0345",
    "e\u0301", "\u200d", "\ufeff", "\x00", "\x7f", "👨‍👩‍👧", "🏳️‍🌈", "1.5", "(masterpiece:1.2)", "[[x]]",
]
_CHARACTER_RANGES = [
    (0x21, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F), (0x3040, 0x30FF),
    (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x1F300, 0x1FAFF), (0x300, 0x36F), (0x2000, 0x206F), (0x10400, 0x1057F),
]


def _random_piece(rng, words):
    kind = rng.random()
    if kind < 0.5:
        word = rng.choice(words)
        return rng.choice((word, word, word.upper(), word.title()))
    if kind < 0.65:
        return rng.choice(_FRAGMENTS)
    if kind < 0.9:
        low, high = rng.choice(_CHARACTER_RANGES)
        return "".join(chr(rng.randint(low, high)) for _ in range(rng.randint(1, 6)))
    code_points = (rng.randint(0, 0x10FFFF) for _ in range(rng.randint(1, 3)))
    return "".join(chr(c) for c in code_points if not 0xD800 <= c <= 0xDFFF)
