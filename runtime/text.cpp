//===- runtime/text.cpp - turning text into token ids ---------------------===//
//
// A hand-rolled UTF-8 decoder (so that invalid input is an error with an
// offset rather than undefined behaviour) feeding a three-state splitter:
// inside a word, at a CJK ideograph, or between tokens.
//
//===----------------------------------------------------------------------===//
#include "runtime/text.h"

#include "ir/diagnostic.h"

#include <algorithm>
#include <fmt/format.h>

namespace kiln::runtime {

namespace {

/// Decodes one code point at s[i]; advances i. Throws on malformed input.
char32_t decode(const std::string &s, size_t &i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (len == 0 || i + len > s.size()) throw Error(fmt::format("invalid UTF-8 at byte {}", i));
  char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
  for (int k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) throw Error(fmt::format("invalid UTF-8 at byte {}", i));
    cp = (cp << 6) | (byte(i + k) & 0x3f);
  }
  static const char32_t minimum[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < minimum[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    throw Error(fmt::format("invalid UTF-8 at byte {}", i));
  i += len;
  return cp;
}

void encode(char32_t cp, std::string &out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

bool isCjk(char32_t c) {
  return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x20000 && c <= 0x2a6df) ||
         (c >= 0xf900 && c <= 0xfaff) || (c >= 0x3040 && c <= 0x30ff) || (c >= 0xac00 && c <= 0xd7af);
}

/// Letters and digits of ASCII, Latin-1/Latin Extended, Greek and Cyrillic;
/// a pragmatic subset that covers the corpora kiln is used on.
bool isWordChar(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  if (c == 0xd7 || c == 0xf7) return false;
  return (c >= 0xc0 && c <= 0x24f) || (c >= 0x370 && c <= 0x3ff) || (c >= 0x400 && c <= 0x4ff);
}

char32_t lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c >= 0xc0 && c <= 0xde && c != 0xd7) return c + 32;
  if (c >= 0x410 && c <= 0x42f) return c + 32;
  if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) return c + 32;
  return c;
}

} // namespace

std::vector<std::string> tokenizeText(const std::string &text) {
  std::vector<std::string> tokens;
  std::string word;
  for (size_t i = 0; i < text.size();) {
    char32_t c = decode(text, i);
    if (isWordChar(c)) {
      encode(lower(c), word);
      continue;
    }
    if (!word.empty()) tokens.push_back(std::move(word));
    word.clear();
    if (isCjk(c)) {
      std::string one;
      encode(c, one);
      tokens.push_back(one);
    }
  }
  if (!word.empty()) tokens.push_back(word);
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

Tensor padBatch(const std::vector<std::vector<int32_t>> &seqs, int64_t maxLen) {
  size_t longest = 1;
  for (const auto &s : seqs) longest = std::max(longest, s.size());
  if (maxLen > 0) longest = std::min<size_t>(longest, static_cast<size_t>(maxLen));
  Tensor t(ir::DType::I32, {static_cast<int64_t>(seqs.size()), static_cast<int64_t>(longest)});
  auto ids = t.i32();
  for (size_t b = 0; b < seqs.size(); ++b)
    for (size_t k = 0; k < std::min(longest, seqs[b].size()); ++k) ids[b * longest + k] = seqs[b][k];
  return t;
}

} // namespace kiln::runtime
