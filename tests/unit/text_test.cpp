//===- tests/unit/text_test.cpp - the tokenizer (runtime/text.h) ----------===//
//
// Exact token lists for each rule of the tokenizer: words in every script
// with their marks (Arabic, Hebrew, Devanagari), one token per character for
// Han, kana, Hangul and Thai, emoji as tokens of their own, case folding
// (Ł, Ё, ß, Σ) and NFKC (full-width letters, ligatures, decomposed accents),
// what is dropped and what separates, mixed scripts; plain ASCII as before
// (same tokens, same hashed ids); invalid UTF-8 of each kind at its offset.
//
//===----------------------------------------------------------------------===//
#include "runtime/text.h"

#include "ir/diagnostic.h"

#include <doctest/doctest.h>

using namespace kiln;
using namespace kiln::runtime;

using Tokens = std::vector<std::string>;

// Failed checks print the token lists.
template <> struct doctest::StringMaker<Tokens> {
  static doctest::String convert(const Tokens &tokens) {
    std::string out = "{";
    for (const std::string &t : tokens) out += (out.size() > 1 ? ", \"" : "\"") + t + "\"";
    return (out + "}").c_str();
  }
};

TEST_CASE("tokenizer: plain ASCII is lower-cased runs of letters and digits, as it always was") {
  CHECK(tokenizeText("Hello, World! Win $1000 NOW... e-mail me_at foo@bar.com don't") ==
        Tokens{"hello", "world", "win", "1000", "now", "e", "mail", "me", "at", "foo", "bar", "com", "don", "t"});
  CHECK(tokenizeText("").empty());
  CHECK(tokenizeText(" \t\r\n?!<>[]{}|~^`'\"#%&*+=/\\").empty());
  CHECK(tokenizeText(std::string("a\0b", 3)) == Tokens{"a", "b"});
  // Ids too: the FNV-1a hash of the same bytes. These are the ids kiln
  // gave before the tokenizer moved to utf8proc.
  CHECK(hashedIds(tokenizeText("Free money NOW"), 100) == std::vector<int32_t>{73, 45, 71});
}

TEST_CASE("tokenizer: Arabic, Hebrew and Devanagari words keep their marks") {
  CHECK(tokenizeText("مرحبا بالعالم") == Tokens{"مرحبا", "بالعالم"});
  CHECK(tokenizeText("مَرْحَبًا بِالْعَالَمِ!") == Tokens{"مَرْحَبًا", "بِالْعَالَمِ"}); // harakat (Mn) inside words
  CHECK(tokenizeText("عام ٢٠٢٤، شكرا") == Tokens{"عام", "٢٠٢٤", "شكرا"});              // Arabic-Indic digits, Arabic comma
  CHECK(tokenizeText("\xEF\xBB\xBB") == Tokens{"لا"}); // presentation form ﻻ -> lam alef (NFKC)
  CHECK(tokenizeText("שלום עולם") == Tokens{"שלום", "עולם"});
  CHECK(tokenizeText("שָׁלוֹם, עוֹלָם.") == Tokens{"שָׁלוֹם", "עוֹלָם"}); // niqqud inside words
  CHECK(tokenizeText("\xE2\x80\x8Fשלום\xE2\x80\x8F") == Tokens{"שלום"}); // right-to-left marks (Cf) dropped
  CHECK(tokenizeText("नमस्ते दुनिया। १२३") == Tokens{"नमस्ते", "दुनिया", "१२३"}); // virama, vowel signs, danda, digits
  CHECK(tokenizeText("हिन्दी") == Tokens{"हिन्दी"});
}

TEST_CASE("tokenizer: Thai letters are a token each, with their vowel and tone marks") {
  CHECK(tokenizeText("สวัสดีชาวโลก") == Tokens{"ส", "วั", "ส", "ดี", "ช", "า", "ว", "โ", "ล", "ก"});
  CHECK(tokenizeText("ภาษาไทย ๒๕๖๗") == Tokens{"ภ", "า", "ษ", "า", "ไ", "ท", "ย", "๒๕๖๗"}); // Thai digits form words
  CHECK(tokenizeText("thaiไทย") == Tokens{"thai", "ไ", "ท", "ย"});
}

TEST_CASE("tokenizer: Han, kana and Hangul are one token per character") {
  CHECK(tokenizeText("你好，世界。") == Tokens{"你", "好", "世", "界"});
  CHECK(tokenizeText("日本語のテキスト") == Tokens{"日", "本", "語", "の", "テ", "キ", "ス", "ト"});
  CHECK(tokenizeText("時々") == Tokens{"時", "々"});                   // iteration mark
  CHECK(tokenizeText("ｶﾀｶﾅ") == Tokens{"カ", "タ", "カ", "ナ"});     // half-width katakana -> full width
  CHECK(tokenizeText("か\xE3\x82\x99") == Tokens{"が"});              // ka + combining voiced mark -> ga
  CHECK(tokenizeText("한국어 텍스트") == Tokens{"한", "국", "어", "텍", "스", "트"});
  CHECK(tokenizeText("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB") == Tokens{"한"}); // conjoining jamo compose
  CHECK(tokenizeText("\xF0\xA0\x80\x80\xF0\xAA\x9C\x80") == Tokens{"\xF0\xA0\x80\x80", "\xF0\xAA\x9C\x80"}); // Ext B, C
}

TEST_CASE("tokenizer: emoji and other pictographs are tokens of their own") {
  CHECK(tokenizeText("🙂") == Tokens{"🙂"});
  CHECK(tokenizeText("great👍🏽!!") == Tokens{"great", "👍"});          // skin tone (Sk) separates and is dropped
  CHECK(tokenizeText("I ❤️ NY") == Tokens{"i", "❤", "ny"});              // variation selector dropped
  CHECK(tokenizeText("👨‍👩‍👧") == Tokens{"👨", "👩", "👧"});  // zero-width joiners dropped
  CHECK(tokenizeText("🇫🇷") == Tokens{"🇫", "🇷"});                      // a flag is two regional indicators
  CHECK(tokenizeText("©2024 ° ✓") == Tokens{"©", "2024", "°", "✓"});
  CHECK(tokenizeText("€5 + 3 = 8 → ok") == Tokens{"5", "3", "8", "ok"}); // Sc, Sm: separators
}

TEST_CASE("tokenizer: case folding (Ł, Ё, ß, final sigma)") {
  CHECK(tokenizeText("ŁÓDŹ Łódź") == Tokens{"łódź", "łódź"});
  CHECK(tokenizeText("ЁЛКА Ёлка ёлка") == Tokens{"ёлка", "ёлка", "ёлка"});
  CHECK(tokenizeText("Straße STRASSE strasse ẞ") == Tokens{"strasse", "strasse", "strasse", "ss"});
  CHECK(tokenizeText("ΣΊΣΥΦΟΣ λόγος") == Tokens{"σίσυφοσ", "λόγοσ"}); // ς folds to σ
  CHECK(tokenizeText("ǅemal ĞÜŞİ") == Tokens{"d\xC5\xBE" "emal", "ğüşi̇"}); // ǅ -> ǆ -> dž (NFKC); İ -> i + dot above
}

TEST_CASE("tokenizer: NFKC (full-width letters, ligatures, composed accents, compatibility digits)") {
  CHECK(tokenizeText("ＡＢＣ １２３") == Tokens{"abc", "123"});
  CHECK(tokenizeText("ﬁle ﬂow") == Tokens{"file", "flow"});
  CHECK(tokenizeText("cafe\xCC\x81 caf\xC3\xA9") == Tokens{"caf\xC3\xA9", "caf\xC3\xA9"});
  CHECK(tokenizeText("x² ½ ①") == Tokens{"x2", "1", "2", "1"});
  CHECK(tokenizeText("Ⅻ ㎏") == Tokens{"xii", "kg"});
}

TEST_CASE("tokenizer: what joins, what is dropped, what separates") {
  CHECK(tokenizeText("co\xC2\xADoperate") == Tokens{"cooperate"});  // soft hyphen (Cf)
  CHECK(tokenizeText("می‌خواهم") == Tokens{"میخواهم"});        // zero-width non-joiner (Cf)
  CHECK(tokenizeText("\xCC\x81" "abc") == Tokens{"abc"});            // a mark with nothing before it
  CHECK(tokenizeText("a\xC2\xA0" "b\xE3\x80\x80" "c\xE2\x80\xA8" "d") == Tokens{"a", "b", "c", "d"}); // NBSP, ideographic space, line separator
  CHECK(tokenizeText("«oui» — “yes” ¿qué?") == Tokens{"oui", "yes", "qué"});
  CHECK(tokenizeText("a\xEE\x80\x80" "b") == Tokens{"a", "b"});      // private use
  CHECK(tokenizeText("a\xCD\xB8" "b") == Tokens{"a", "b"});          // U+0378, unassigned
}

TEST_CASE("tokenizer: mixed scripts") {
  CHECK(tokenizeText("Hello мир שלום नमस्ते 世界 🙂 สวัสดี") ==
        Tokens{"hello", "мир", "שלום", "नमस्ते", "世", "界", "🙂", "ส", "วั", "ส", "ดี"});
  CHECK(tokenizeText("abc中文def") == Tokens{"abc", "中", "文", "def"});
  CHECK(tokenizeText("iPhone15の価格") == Tokens{"iphone15", "の", "価", "格"});
  CHECK(tokenizeText("Привет,world") == Tokens{"привет", "world"});
}

TEST_CASE("tokenizer: invalid UTF-8 is an error at the first byte of the bad sequence") {
  auto error = [](const std::string &text) -> std::string {
    try {
      tokenizeText(text);
    } catch (const Error &e) {
      return e.message();
    }
    return "no error";
  };
  CHECK(error("ab\xC0\xAF") == "invalid UTF-8 at byte 2");         // overlong '/'
  CHECK(error("\xE0\x80\xAF") == "invalid UTF-8 at byte 0");       // overlong, 3 bytes
  CHECK(error("\xF0\x82\x82\xAC") == "invalid UTF-8 at byte 0");   // overlong €, 4 bytes
  CHECK(error("مرحبا \xED\xA0\x80") == "invalid UTF-8 at byte 11"); // encoded surrogate after Arabic
  CHECK(error("x \xF4\x90\x80\x80") == "invalid UTF-8 at byte 2");  // U+110000
  CHECK(error("\xF5\x80\x80\x80") == "invalid UTF-8 at byte 0");    // lead byte F5
  CHECK(error("你好\xE4\xB8") == "invalid UTF-8 at byte 6");        // truncated at the end
  CHECK(error("\xF0\x9F\x99 ok") == "invalid UTF-8 at byte 0");     // truncated before a space
  CHECK(error("ok\x80") == "invalid UTF-8 at byte 2");              // stray continuation byte
  CHECK(error("\xFF") == "invalid UTF-8 at byte 0");
}
