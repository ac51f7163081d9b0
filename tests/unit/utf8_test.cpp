//===- tests/unit/utf8_test.cpp - the UTF-8 module (runtime/utf8.h) -------===//
//
// Validation names the first byte of the first ill-formed sequence for every
// kind (stray continuation bytes, C0/C1 and F5-FF, overlong 2-, 3- and 4-byte
// forms, encoded surrogates, values above U+10FFFF, sequences cut short or
// interrupted) and accepts every boundary scalar value; decodeAt and append
// round-trip all 1,112,064 scalar values and refuse the rest; categories,
// case folding and NFKC give the documented results.
//
//===----------------------------------------------------------------------===//
#include "runtime/utf8.h"

#include "ir/diagnostic.h"

#include <doctest/doctest.h>
#include <ios>
#include <string>

using namespace kiln;

TEST_CASE("utf8: the first ill-formed sequence is found, at its first byte") {
  auto at = [](const std::string &s) { return utf8::firstInvalid(s); };
  CHECK(at("") == utf8::npos);
  CHECK(at("plain ASCII \x7f") == utf8::npos);
  CHECK(at("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x99\x82") == utf8::npos); // é € 🙂

  CHECK(at("ab\x80") == 2);                // stray continuation byte
  CHECK(at("\xC3\xA9\xBF") == 2);          // one continuation byte too many
  CHECK(at("x\xC0\xAF") == 1);             // overlong '/' (2 bytes)
  CHECK(at("x\xC1\xBF") == 1);             // overlong U+007F
  CHECK(at("xy\xE0\x80\xAF") == 2);        // overlong '/' (3 bytes)
  CHECK(at("\xE0\x9F\xBF") == 0);          // overlong U+07FF
  CHECK(at("\xF0\x80\x80\xAF") == 0);      // overlong '/' (4 bytes)
  CHECK(at("\xF0\x8F\xBF\xBF") == 0);      // overlong U+FFFF
  CHECK(at("ok \xED\xA0\x80") == 3);       // U+D800, a high surrogate
  CHECK(at("\xED\xBF\xBF") == 0);          // U+DFFF, a low surrogate
  CHECK(at("\xED\xA0\xBD\xED\xB8\x80") == 0); // a surrogate pair, CESU-8 style
  CHECK(at("\xF4\x90\x80\x80") == 0);      // U+110000
  CHECK(at("a\xF5\x80\x80\x80") == 1);     // lead byte F5: above U+10FFFF
  CHECK(at("\xF7\xBF\xBF\xBF") == 0);      // U+1FFFFF
  CHECK(at("\xF8\x88\x80\x80\x80") == 0);  // a 5-byte form
  CHECK(at("\xFE") == 0);
  CHECK(at("\xFF") == 0);
  CHECK(at("abc\xE4\xB8") == 3);           // 3-byte sequence cut short at the end
  CHECK(at("abc\xF0\x9F\x99") == 3);       // 4-byte sequence cut short at the end
  CHECK(at("\xC3") == 0);                  // 2-byte sequence cut short at the end
  CHECK(at("\xE4\xB8(") == 0);             // interrupted by ASCII
  CHECK(at("\xF0\x9F\x99\xF0\x9F\x99\x82") == 0); // interrupted by another lead byte
  CHECK(at("\xC3\xA9\xC3\xA9\xFF\xC3\xA9") == 4); // after valid multi-byte text

  CHECK_NOTHROW(utf8::requireValid("\xE2\x82\xAC"));
  CHECK_THROWS_WITH_AS(utf8::requireValid("ab\xED\xA0\x80"), "invalid UTF-8 at byte 2", Error);
}

TEST_CASE("utf8: boundary scalar values are valid and decode to themselves") {
  struct Case {
    const char *bytes;
    char32_t cp;
  };
  for (Case c : {Case{"\x7F", 0x7F}, Case{"\xC2\x80", 0x80}, Case{"\xDF\xBF", 0x7FF}, Case{"\xE0\xA0\x80", 0x800},
                 Case{"\xED\x9F\xBF", 0xD7FF}, Case{"\xEE\x80\x80", 0xE000}, Case{"\xEF\xBF\xBD", 0xFFFD},
                 Case{"\xEF\xBF\xBF", 0xFFFF}, Case{"\xF0\x90\x80\x80", 0x10000},
                 Case{"\xF4\x8F\xBF\xBF", 0x10FFFF}}) {
    std::string s = c.bytes;
    CAPTURE(static_cast<uint32_t>(c.cp));
    CHECK(utf8::firstInvalid(s) == utf8::npos);
    utf8::Decoded d = utf8::decodeAt(s, 0);
    CHECK(d.codePoint == c.cp);
    CHECK(d.length == s.size());
  }
  CHECK(utf8::decodeAt(std::string("\0x", 2), 0).length == 1); // NUL is a character like any other
  CHECK(utf8::decodeAt("a\xC0\xAF", 1).length == 0);
  CHECK(utf8::decodeAt("\xE4\xB8", 0).length == 0);
}

TEST_CASE("utf8: every scalar value round-trips; surrogates and values above U+10FFFF do not encode") {
  size_t checked = 0;
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string s;
    utf8::append(s, cp);
    utf8::Decoded d = utf8::decodeAt(s, 0);
    if (d.codePoint != cp || d.length != s.size() || s.size() != (cp < 0x80 ? 1u : cp < 0x800 ? 2u : cp < 0x10000 ? 3u : 4u)) {
      FAIL_CHECK("U+" << std::hex << static_cast<uint32_t>(cp) << " does not round-trip");
      break;
    }
    ++checked;
  }
  CHECK(checked == 1112064);
  std::string out;
  CHECK_THROWS_WITH_AS(utf8::append(out, 0xD800), "U+D800 is not a Unicode scalar value", Error);
  CHECK_THROWS_WITH_AS(utf8::append(out, 0xDFFF), "U+DFFF is not a Unicode scalar value", Error);
  CHECK_THROWS_WITH_AS(utf8::append(out, 0x110000), "U+110000 is not a Unicode scalar value", Error);
  CHECK(out.empty());
  CHECK_FALSE(utf8::isScalarValue(0xDC00));
  CHECK(utf8::isScalarValue(0xFFFE)); // a noncharacter, but a scalar value
}

TEST_CASE("utf8: general categories") {
  using C = utf8::Category;
  CHECK(utf8::category(U'A') == C::Lu);
  CHECK(utf8::category(U'ł') == C::Ll);
  CHECK(utf8::category(U'ǅ') == C::Lt);
  CHECK(utf8::category(U'ー') == C::Lm);
  CHECK(utf8::category(U'م') == C::Lo);
  CHECK(utf8::category(U'中') == C::Lo);
  CHECK(utf8::category(0x064E) == C::Mn); // Arabic fatha
  CHECK(utf8::category(0x093E) == C::Mc); // Devanagari vowel sign aa
  CHECK(utf8::category(0x20E3) == C::Me); // combining enclosing keycap
  CHECK(utf8::category(U'٣') == C::Nd);
  CHECK(utf8::category(U'Ⅻ') == C::Nl);
  CHECK(utf8::category(U'½') == C::No);
  CHECK(utf8::category(U'_') == C::Pc);
  CHECK(utf8::category(U'+') == C::Sm);
  CHECK(utf8::category(U'€') == C::Sc);
  CHECK(utf8::category(U'^') == C::Sk);
  CHECK(utf8::category(U'🙂') == C::So);
  CHECK(utf8::category(0x3000) == C::Zs);
  CHECK(utf8::category(0x2028) == C::Zl);
  CHECK(utf8::category(U'\t') == C::Cc);
  CHECK(utf8::category(0x200D) == C::Cf); // zero-width joiner
  CHECK(utf8::category(0xE000) == C::Co);
  CHECK(utf8::category(0x0378) == C::Cn); // unassigned
  CHECK(utf8::category(0xD800) == C::Cn); // not a scalar value
  CHECK(utf8::category(0x110000) == C::Cn);
  CHECK(std::string(utf8::categoryName(C::Mc)) == "Mc");
  CHECK(std::string(utf8::categoryName(C::So)) == "So");
  CHECK(utf8::isLetter(C::Lt));
  CHECK_FALSE(utf8::isLetter(C::Mn));
  CHECK(utf8::isMark(C::Me));
  CHECK(utf8::isNumber(C::No));
  CHECK_FALSE(utf8::isNumber(C::Pc));
  CHECK(std::string(utf8::unicodeVersion()).size() >= 4);
}

TEST_CASE("utf8: case folding and NFKC") {
  CHECK(utf8::caseFold("ŁÓDŹ Ёлка ΣΊΣΥΦΟΣ") == "łódź ёлка σίσυφοσ");
  CHECK(utf8::caseFold("Straße ẞ") == "strasse ss"); // full folding, not just lower-casing
  CHECK(utf8::caseFold("ＡＢＣ") == "ａｂｃ");          // folding alone keeps the width
  CHECK(utf8::nfkc("ＡＢＣ ﬁ ① x² ㎏") == "ABC fi 1 x2 kg");
  CHECK(utf8::nfkc("cafe\xCC\x81") == "caf\xC3\xA9"); // e + combining acute composes to é
  CHECK(utf8::nfkc("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB") == "한"); // conjoining jamo compose
  CHECK(utf8::nfkcCaseFold("ＡＢＣ Straße Ⅻ") == "abc strasse xii");
  CHECK(utf8::nfkcCaseFold("") == "");
  CHECK(utf8::nfkcCaseFold(std::string("a\0B", 3)) == std::string("a\0b", 3)); // NUL does not end the text
  CHECK_THROWS_WITH_AS(utf8::nfkc("ok\xF4\x90\x80\x80"), "invalid UTF-8 at byte 2", Error);
  CHECK_THROWS_WITH_AS(utf8::caseFold("\xC0\x80"), "invalid UTF-8 at byte 0", Error);
  CHECK_THROWS_WITH_AS(utf8::nfkcCaseFold("abc\xE4\xB8"), "invalid UTF-8 at byte 3", Error);
}
