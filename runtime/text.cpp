//===- runtime/text.cpp - turning text into token ids ---------------------===//
//
// nfkcCaseFold() (runtime/utf8.h) validates and normalizes the whole text;
// a splitter then walks its code points with one token in progress, which is
// either a word (letters and numbers) or a character token (one letter of a
// script without spaces) and in both cases takes the marks that follow it.
// The rules are listed in text.h; tests/parity/tokenizer.py mirrors this
// file rule for rule, so a change here must be made there too (the parity
// test, tests/lit/tokenizer_parity.test, fails until it is).
//
//===----------------------------------------------------------------------===//
#include "runtime/text.h"

#include "runtime/utf8.h"

#include <algorithm>
#include <cassert>
#include <iterator>
#include <string_view>

namespace kiln::runtime {

namespace {

struct CodePointRange {
  char32_t first, last;
};

/// Scripts written without spaces between words, whose letters are a token
/// each. Only letters (L*) in these ranges count: their punctuation, digits
/// and symbols follow the general rules. Half-width forms are listed though
/// NFKC turns them into full-width ones, so that the table alone is the
/// definition.
constexpr CodePointRange kCharacterTokenRanges[] = {
    {0x0E00, 0x0EFF},   // Thai, Lao
    {0x1100, 0x11FF},   // Hangul Jamo
    {0x2E80, 0x9FFF},   // CJK radicals and symbols (々 〆), kana, Bopomofo, Hangul
                        // compatibility jamo, CJK Unified Ideographs and Extension A
    {0xA960, 0xA97F},   // Hangul Jamo Extended-A
    {0xAC00, 0xD7FF},   // Hangul Syllables, Hangul Jamo Extended-B
    {0xF900, 0xFAFF},   // CJK Compatibility Ideographs
    {0xFF66, 0xFFDC},   // half-width katakana and Hangul
    {0x1AFF0, 0x1B16F}, // kana extensions and supplement
    {0x20000, 0x323AF}, // CJK Extensions B to H, CJK Compatibility Supplement
};

/// Variation selectors pick a glyph (text or emoji style, an ideograph
/// variant); "❤" and "❤\uFE0F" are the same word to a reader.
bool isVariationSelector(char32_t cp) {
  return (cp >= 0xFE00 && cp <= 0xFE0F) || (cp >= 0xE0100 && cp <= 0xE01EF);
}

} // namespace

bool isCharacterTokenScript(char32_t cp) {
  return std::any_of(std::begin(kCharacterTokenRanges), std::end(kCharacterTokenRanges),
                     [&](const CodePointRange &r) { return cp >= r.first && cp <= r.last; });
}

std::vector<std::string> tokenizeText(const std::string &text) {
  using utf8::Category;
  const std::string folded = utf8::nfkcCaseFold(text); // throws, located, on invalid UTF-8
  std::vector<std::string> tokens;
  std::string current; // the token in progress; marks join it
  bool currentIsWord = false;
  auto finish = [&] {
    if (!current.empty()) tokens.push_back(std::move(current));
    current.clear();
    currentIsWord = false;
  };
  for (size_t i = 0; i < folded.size();) {
    // ASCII, most of most texts, without tables: letters and digits are L*
    // and Nd, every other ASCII character (Cc, Zs, P*, Sm, Sc, Sk) separates.
    if (const char b = folded[i]; static_cast<unsigned char>(b) < 0x80) {
      ++i;
      if ((b >= 'a' && b <= 'z') || (b >= '0' && b <= '9')) { // folded: no upper case left
        if (!currentIsWord) finish();
        current += b;
        currentIsWord = true;
      } else {
        finish();
      }
      continue;
    }
    const size_t at = i;
    utf8::Decoded d = utf8::decodeAt(folded, i);
    assert(d.length > 0 && "utf8proc's output is well-formed");
    i += d.length;
    const char32_t cp = d.codePoint;
    const std::string_view bytes(folded.data() + at, d.length);
    Category c = utf8::category(cp);
    if (c == Category::Cf || isVariationSelector(cp)) continue;
    if (utf8::isMark(c)) {
      if (!current.empty()) current += bytes;
      continue;
    }
    if (utf8::isLetter(c) && isCharacterTokenScript(cp)) {
      finish();
      current = bytes;
      continue;
    }
    if (utf8::isLetter(c) || utf8::isNumber(c)) {
      if (!currentIsWord) finish();
      current += bytes;
      currentIsWord = true;
      continue;
    }
    finish();
    if (c == Category::So) tokens.emplace_back(bytes); // marks after a symbol are dropped
  }
  finish();
  return tokens;
}

std::vector<int32_t> hashedIds(const std::vector<std::string> &tokens, int64_t vocab) {
  std::vector<int32_t> ids;
  ids.reserve(tokens.size());
  for (const std::string &t : tokens) {
    // FNV-1a: stable across platforms and runs, unlike std::hash.
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : t) h = (h ^ c) * 1099511628211ull;
    ids.push_back(vocab > 2 ? static_cast<int32_t>(2 + h % static_cast<uint64_t>(vocab - 2)) : 1);
  }
  return ids;
}

Tensor padBatch(const std::vector<std::vector<int32_t>> &seqs, int64_t maxLen, int64_t minLength) {
  size_t longest = 1;
  for (const auto &s : seqs) longest = std::max(longest, s.size());
  if (maxLen > 0) longest = std::min<size_t>(longest, static_cast<size_t>(maxLen));
  longest = std::max<size_t>(longest, static_cast<size_t>(std::max<int64_t>(minLength, 1)));
  Tensor t(ir::DType::I32, {static_cast<int64_t>(seqs.size()), static_cast<int64_t>(longest)});
  auto ids = t.i32();
  for (size_t b = 0; b < seqs.size(); ++b)
    for (size_t k = 0; k < std::min(longest, seqs[b].size()); ++k) ids[b * longest + k] = seqs[b][k];
  return t;
}

} // namespace kiln::runtime
