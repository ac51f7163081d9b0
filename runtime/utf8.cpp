//===- runtime/utf8.cpp - UTF-8 and Unicode properties, from utf8proc ------===//
//
// Thin wrappers over utf8proc. utf8proc_iterate() already rejects every
// ill-formed sequence kiln must reject (it is checked against each kind in
// tests/unit/utf8_test.cpp); what it does not give is where the bad sequence
// is, so validation walks the text itself and the normalizing functions
// validate first to say "at byte N" instead of utf8proc's bare error code.
//
//===----------------------------------------------------------------------===//
#include "runtime/utf8.h"

#include "ir/diagnostic.h"

#include <algorithm>
#include <cstdlib>
#include <fmt/format.h>
#include <memory>
#include <new>
#include <utf8proc.h>

namespace kiln::utf8 {

static_assert(static_cast<int>(Category::Cn) == UTF8PROC_CATEGORY_CN);
static_assert(static_cast<int>(Category::Lo) == UTF8PROC_CATEGORY_LO);
static_assert(static_cast<int>(Category::Mn) == UTF8PROC_CATEGORY_MN);
static_assert(static_cast<int>(Category::So) == UTF8PROC_CATEGORY_SO);
static_assert(static_cast<int>(Category::Co) == UTF8PROC_CATEGORY_CO);

namespace {

const utf8proc_uint8_t *bytes(std::string_view s) { return reinterpret_cast<const utf8proc_uint8_t *>(s.data()); }

/// utf8proc_map over well-formed text; the result is malloc'd by utf8proc.
std::string map(std::string_view s, int options) {
  requireValid(s);
  if (s.empty()) return {};
  utf8proc_uint8_t *out = nullptr;
  utf8proc_ssize_t n = utf8proc_map(bytes(s), static_cast<utf8proc_ssize_t>(s.size()), &out,
                                    static_cast<utf8proc_option_t>(options));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(out, &std::free);
  if (n == UTF8PROC_ERROR_NOMEM) throw std::bad_alloc();
  // The input was validated and the options are fixed, so any other error
  // is a bug in this file, not in the text.
  if (n < 0) throw Error(fmt::format("utf8proc: {}", utf8proc_errmsg(n)));
  return std::string(reinterpret_cast<const char *>(out), static_cast<size_t>(n));
}

// STABLE honours the composition exclusions, which NFC and NFKC require.
constexpr int kNfkc = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;

/// ASCII text is its own NFKC and folds to lower case; most texts kiln
/// tokenizes are ASCII, and this skips utf8proc's allocation and tables.
bool isAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

std::string lowerAscii(std::string_view s) {
  std::string out(s);
  for (char &c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

} // namespace

Decoded decodeAt(std::string_view s, size_t pos) {
  utf8proc_int32_t cp = -1;
  utf8proc_ssize_t n = utf8proc_iterate(bytes(s) + pos, static_cast<utf8proc_ssize_t>(s.size() - pos), &cp);
  if (n <= 0 || cp < 0) return {};
  return {static_cast<char32_t>(cp), static_cast<size_t>(n)};
}

size_t firstInvalid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    // ASCII needs no table; it is most of most texts.
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t n = decodeAt(s, i).length;
    if (n == 0) return i;
    i += n;
  }
  return npos;
}

void requireValid(std::string_view s) {
  if (size_t at = firstInvalid(s); at != npos) throw Error(fmt::format("invalid UTF-8 at byte {}", at));
}

bool isScalarValue(char32_t cp) { return utf8proc_codepoint_valid(static_cast<utf8proc_int32_t>(cp)); }

void append(std::string &out, char32_t cp) {
  // utf8proc_encode_char would encode a surrogate; UTF-8 has no such form.
  if (!isScalarValue(cp)) throw Error(fmt::format("U+{:04X} is not a Unicode scalar value", static_cast<uint32_t>(cp)));
  utf8proc_uint8_t buf[4];
  utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
  out.append(reinterpret_cast<const char *>(buf), static_cast<size_t>(n));
}

Category category(char32_t cp) {
  if (!isScalarValue(cp)) return Category::Cn;
  return static_cast<Category>(utf8proc_category(static_cast<utf8proc_int32_t>(cp)));
}

const char *categoryName(Category c) {
  static const char *const names[] = {"Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd",
                                      "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm",
                                      "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};
  return names[static_cast<int>(c)];
}

std::string caseFold(std::string_view s) { return isAscii(s) ? lowerAscii(s) : map(s, UTF8PROC_CASEFOLD); }

std::string nfkc(std::string_view s) { return isAscii(s) ? std::string(s) : map(s, kNfkc); }

std::string nfkcCaseFold(std::string_view s) {
  return isAscii(s) ? lowerAscii(s) : map(s, kNfkc | UTF8PROC_CASEFOLD);
}

const char *unicodeVersion() { return utf8proc_unicode_version(); }

} // namespace kiln::utf8
