"""kiln's tokenizer (runtime/text.cpp) in Python, on the standard library's
unicodedata, for the PyTorch side of parity tests and as a second reading of
the rules in runtime/text.h. tokenizer_parity.py checks that both give the
same tokens.

utf8proc folds case and normalizes in one pass: each code point is case
folded and compatibility-decomposed, recursively, then the text is put in
canonical order and composed. normalize() does the same, step by step, with
unicodedata.

Python 3.11's unicodedata has Unicode 14 tables and utf8proc 2.8 has
Unicode 15's: the two agree on every code point assigned in Unicode 14
(tokenizer_parity.py checks them all), not on ones added in 15.

usage as a module:  tokenizer.tokenize("Hello, ＷＯＲＬＤ 🙂") -> ['hello', 'world', '🙂']
usage as a script:  tokenizer.py FILE   prints each line's tokens, space-separated
"""
import sys
import unicodedata

# Scripts written without spaces between words, whose letters are a token
# each; the same table as kCharacterTokenRanges in runtime/text.cpp.
CHARACTER_TOKEN_RANGES = [
    (0x0E00, 0x0EFF),    # Thai, Lao
    (0x1100, 0x11FF),    # Hangul Jamo
    (0x2E80, 0x9FFF),    # CJK radicals and symbols, kana, Bopomofo, Hangul compatibility jamo, CJK ideographs
    (0xA960, 0xA97F),    # Hangul Jamo Extended-A
    (0xAC00, 0xD7FF),    # Hangul Syllables, Hangul Jamo Extended-B
    (0xF900, 0xFAFF),    # CJK Compatibility Ideographs
    (0xFF66, 0xFFDC),    # half-width katakana and Hangul
    (0x1AFF0, 0x1B16F),  # kana extensions and supplement
    (0x20000, 0x323AF),  # CJK Extensions B to H, CJK Compatibility Supplement
]


def is_character_token_script(cp):
    return any(first <= cp <= last for first, last in CHARACTER_TOKEN_RANGES)


def is_variation_selector(cp):
    return 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF


def _fold_and_decompose(ch, out):
    """utf8proc_decompose_char with CASEFOLD and COMPAT: Hangul syllables
    split into jamo; else the case folding, if any, is expanded again; else
    the decomposition mapping, if any, is expanded again; else ch itself."""
    if 0xAC00 <= ord(ch) <= 0xD7A3:
        out.extend(unicodedata.normalize("NFD", ch))
        return
    folded = ch.casefold()
    if folded != ch:
        for c in folded:
            _fold_and_decompose(c, out)
        return
    mapping = unicodedata.decomposition(ch)  # e.g. "<compat> 0066 0069", or "" for none
    if mapping:
        for c in mapping.split():
            if not c.startswith("<"):
                _fold_and_decompose(chr(int(c, 16)), out)
        return
    out.append(ch)


def normalize(text):
    """Case folding and NFKC as utf8proc combines them (utf8::nfkcCaseFold):
    every code point is folded and decomposed on its own, and only then is
    the whole put in canonical order and composed (NFC of a fully decomposed
    text does exactly that). The order matters for U+0345 COMBINING GREEK
    YPOGEGRAMMENI, the one mark that folds to a letter (ι): folded before
    reordering, it stays where it was written."""
    out = []
    for ch in text:
        _fold_and_decompose(ch, out)
    return unicodedata.normalize("NFC", "".join(out))


def tokenize(text):
    tokens = []
    current = ""  # the token in progress; marks join it
    current_is_word = False
    for ch in normalize(text):
        cp = ord(ch)
        cat = unicodedata.category(ch)
        if cat == "Cf" or is_variation_selector(cp):
            continue  # neither joins nor splits
        if cat[0] == "M":
            if current:
                current += ch
            continue
        if cat[0] == "L" and is_character_token_script(cp):
            if current:
                tokens.append(current)
            current, current_is_word = ch, False
            continue
        if cat[0] in "LN":
            if not current_is_word and current:
                tokens.append(current)
                current = ""
            current += ch
            current_is_word = True
            continue
        if current:
            tokens.append(current)
        current, current_is_word = "", False
        if cat == "So":
            tokens.append(ch)  # marks after a symbol are dropped
    if current:
        tokens.append(current)
    return tokens


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    # Lines as kiln_print_tokens splits them: at LF, no line after a final LF.
    lines = data.split(b"\n") if data else []
    if data.endswith(b"\n"):
        lines.pop()
    for line in lines:
        print(" ".join(tokenize(line.decode("utf-8"))))
