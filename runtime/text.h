//===- runtime/text.h - turning text into token ids -------------*- C++ -*-===//
//
// The UTF-8 tokenizer. The text is first case folded and put in NFKC
// (runtime/utf8.h), so "Ł" matches "ł", "Ё" matches "ё", "ＡＢＣ" is "abc",
// "ﬁ" is "fi", and "ß" folds to "ss" ("Straße" and "STRASSE" are one word).
// Then, code point by code point, by Unicode general category:
//   - letters (L*) and numbers (Nd, Nl, No) of every script form words;
//   - marks (M*) belong to the token before them (Devanagari vowel signs,
//     Arabic harakat, Thai tone marks); a mark with no word before it is dropped;
//   - letters of scripts written without spaces between words are a token
//     each, with their marks: Han ideographs, kana, Bopomofo and Hangul
//     (syllables and jamo), Thai and Lao (isCharacterTokenScript());
//   - each symbol of category So is a token of its own: emoji and other
//     pictographs, dingbats, "©", "°"; "🙂" is not an empty text;
//   - format characters (Cf: zero-width joiners, soft hyphens, direction
//     marks) and variation selectors are dropped: they neither join nor split;
//   - everything else (spaces, punctuation, other symbols, controls,
//     unassigned code points) separates.
// Plain ASCII tokenizes as before: lowercased runs of letters and digits.
// Invalid UTF-8 is kiln::Error `invalid UTF-8 at byte N`.
// tests/parity/tokenizer.py is the same tokenizer in Python, and
// tests/lit/tokenizer_parity.test checks that the two agree.
//
// Until a model has a vocabulary (built from training data), hashedIds() maps
// words to ids in [2, vocab) with a fixed hash, keeping 0 for <pad> and 1 for
// <unk>; it lets an untrained model run on text, which is what the demo does
// before training exists.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/tensor.h"

#include <string>
#include <vector>

namespace kiln::runtime {

/// Splits UTF-8 text into case-folded NFKC tokens; kiln::Error on invalid UTF-8.
std::vector<std::string> tokenizeText(const std::string &text);

/// Whether letters of the script of `cp` are one token each (Han, kana,
/// Bopomofo, Hangul, Thai, Lao) rather than parts of words.
bool isCharacterTokenScript(char32_t cp);

/// Token ids by a stable hash into [2, vocab).
std::vector<int32_t> hashedIds(const std::vector<std::string> &tokens, int64_t vocab);

/// Pads id sequences with 0 to the longest (cut at maxLen when > 0, and at
/// least minLength long: runtime/data.h minimumLength) into an i32[B,T] tensor.
Tensor padBatch(const std::vector<std::vector<int32_t>> &seqs, int64_t maxLen = 0, int64_t minLength = 1);

} // namespace kiln::runtime
