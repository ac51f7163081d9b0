//===- runtime/utf8.h - UTF-8 and Unicode properties, from utf8proc -*- C++ -*-===//
//
// The one place where kiln looks inside UTF-8: validation that names the byte
// offset of the first ill-formed sequence, decoding and encoding of single
// code points, general categories, full case folding and NFKC. The tokenizer,
// the data reader and the JSON parser all go through it, so that every part
// of kiln agrees on what valid UTF-8 is (no overlong forms, no encoded
// surrogates, nothing above U+10FFFF, no truncated sequences) and on what a
// letter is.
//
// Why utf8proc: the Unicode tables (categories, case folding, decompositions,
// composition exclusions) are large and change with every Unicode version;
// hand-written subsets are how kiln once lost Arabic, Hindi, Thai and emoji
// and lower-cased Ł and Ё wrongly. utf8proc is small, C, carries exactly these
// tables (Unicode 15 in Debian 12's 2.8) and nothing else; ICU would bring far
// more than kiln uses. utf8proc's types stay inside utf8.cpp.
//
//   if (size_t at = utf8::firstInvalid(s); at != utf8::npos) report(at);
//   for (size_t i = 0; i < s.size();) { utf8::Decoded d = utf8::decodeAt(s, i); i += d.length; ... }
//   std::string folded = utf8::nfkcCaseFold("ＡＢＣ Straße"); // "abc strasse"
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::utf8 {

inline constexpr size_t npos = std::string_view::npos;

/// Byte offset of the first byte of the first ill-formed sequence in `s`
/// (bytes C0, C1 and F5-FF, stray continuation bytes, overlong forms,
/// encoded surrogates, values above U+10FFFF, sequences cut short), or npos
/// when all of `s` is well-formed UTF-8.
size_t firstInvalid(std::string_view s);

/// Throws kiln::Error `invalid UTF-8 at byte N` unless `s` is well-formed.
void requireValid(std::string_view s);

/// One code point read from UTF-8 and the number of bytes it took.
struct Decoded {
  char32_t codePoint = 0;
  size_t length = 0; ///< 0 when the sequence at the position is ill-formed
};

/// Decodes the sequence starting at s[pos] (pos < s.size()). An ill-formed
/// sequence gives length 0, so a loop `i += d.length` must check it.
Decoded decodeAt(std::string_view s, size_t pos);

/// A Unicode scalar value: at most U+10FFFF and not a surrogate.
bool isScalarValue(char32_t cp);

/// Appends the UTF-8 form of `cp`; kiln::Error if it is not a scalar value
/// (a surrogate or above U+10FFFF), which has no UTF-8 form.
void append(std::string &out, char32_t cp);

/// Unicode general categories, in utf8proc's (and so a fixed) order.
enum class Category : uint8_t {
  Cn, Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No, Pc, Pd, Ps, Pe,
  Pi, Pf, Po, Sm, Sc, Sk, So, Zs, Zl, Zp, Cc, Cf, Cs, Co,
};

/// The general category of a code point (Cn for unassigned ones and for
/// anything that is not a scalar value).
Category category(char32_t cp);
/// The category's two-letter name, e.g. "Lu".
const char *categoryName(Category c);

inline bool isLetter(Category c) { return c >= Category::Lu && c <= Category::Lo; } // L*
inline bool isMark(Category c) { return c >= Category::Mn && c <= Category::Me; }   // M*
inline bool isNumber(Category c) { return c >= Category::Nd && c <= Category::No; } // N*

/// Full case folding (CaseFolding.txt statuses C and F: "ß" -> "ss",
/// "Ł" -> "ł", "Σ" and "ς" -> "σ"); kiln::Error on ill-formed input.
std::string caseFold(std::string_view s);

/// Normalization form KC ("ﬁ" -> "fi", "Ａ" -> "A", "①" -> "1", decomposed
/// accents composed); kiln::Error on ill-formed input.
std::string nfkc(std::string_view s);

/// Case folding and NFKC in one pass, as utf8proc applies them: every code
/// point on its own is folded, else compatibility-decomposed, recursively;
/// then the whole is put in canonical order and composed. (Folding before
/// reordering matters only for U+0345, the one mark that folds to a letter.)
/// This is what the tokenizer matches words on; kiln::Error on ill-formed
/// input.
std::string nfkcCaseFold(std::string_view s);

/// The Unicode version of utf8proc's tables, e.g. "15.0.0".
const char *unicodeVersion();

} // namespace kiln::utf8
