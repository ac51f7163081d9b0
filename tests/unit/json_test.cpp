//===- tests/unit/json_test.cpp - the strict JSON parser and writer -------===//
//
// Valid documents parse to the expected values; every kind of malformed or
// hostile input (bad escapes, lone surrogates, invalid UTF-8, deep nesting,
// duplicate keys, out-of-range numbers) is a kiln::Error with a byte offset;
// write() and quote() produce text that parses back to the same value.
//
//===----------------------------------------------------------------------===//
#include "runtime/json.h"

#include "ir/diagnostic.h"

#include <cmath>
#include <doctest/doctest.h>
#include <limits>

using namespace kiln;

TEST_CASE("json: scalars, arrays and objects") {
  CHECK(json::parse("null").isNull());
  CHECK(json::parse(" true ").asBool());
  CHECK_FALSE(json::parse("\tfalse\r\n").asBool());
  CHECK(json::parse("-1.5e2").asDouble() == -150.0);
  CHECK(json::parse("0.25").asDouble() == 0.25);
  CHECK(json::parse("\"hi\"").asString() == "hi");

  json::Value v = json::parse(R"({"label": "spam", "ids": [1, 2, [3]], "meta": {}, "x": null})");
  REQUIRE(v.isObject());
  CHECK(v.size() == 4);
  CHECK(v.find("label")->asString() == "spam");
  const json::Array &ids = v.find("ids")->asArray();
  REQUIRE(ids.size() == 3);
  CHECK(ids[1].asInt() == 2);
  CHECK(ids[2].asArray()[0].asInt() == 3);
  CHECK(v.find("meta")->isObject());
  CHECK(v.find("meta")->size() == 0);
  CHECK(v.find("x")->isNull());
  CHECK(v.find("missing") == nullptr);
  CHECK(ids[0].find("label") == nullptr); // find on a non-object
  CHECK(json::parse("[]").size() == 0);
}

TEST_CASE("json: integers are exact only when written as integer literals") {
  CHECK(json::parse("9007199254740993").asInt() == 9007199254740993LL); // 2^53 + 1, not a double
  CHECK(json::parse("-9223372036854775808").asInt() == INT64_MIN);
  CHECK(json::parse("9223372036854775807").asInt() == INT64_MAX);
  CHECK(json::parse("-0").asInt() == 0);
  json::Value big = json::parse("9223372036854775808"); // 2^63 does not fit
  CHECK(big.isNumber());
  CHECK_FALSE(big.isInt());
  CHECK(big.asDouble() == 9223372036854775808.0);
  CHECK_FALSE(json::parse("2.0").isInt());
  CHECK_FALSE(json::parse("1e3").isInt());
  CHECK_THROWS_WITH_AS(json::parse("2.5").asInt(), doctest::Contains("non-integer"), Error);
}

TEST_CASE("json: string escapes and UTF-8") {
  CHECK(json::parse(R"("a\"b\\c\/d\b\f\n\r\t")").asString() == "a\"b\\c/d\b\f\n\r\t");
  CHECK(json::parse(R"("\u0041\u00e9\u20AC")").asString() == "A\xC3\xA9\xE2\x82\xAC");
  CHECK(json::parse(R"("\ud83d\ude00")").asString() == "\xF0\x9F\x98\x80"); // U+1F600 via a surrogate pair
  CHECK(json::parse("\"\xE4\xB8\xAD\xF0\x9F\x98\x80\"").asString() == "\xE4\xB8\xAD\xF0\x9F\x98\x80");
  CHECK(json::parse(R"("\u0000")").asString() == std::string(1, '\0'));
}

TEST_CASE("json: malformed input is an error with a byte offset") {
  auto bad = [](const std::string &text, const char *msg) {
    CAPTURE(text);
    CHECK_THROWS_WITH_AS(json::parse(text), doctest::Contains(msg), Error);
  };
  bad("", "at byte 0: expected a value");
  bad("   ", "at byte 3");
  bad("[1, 2", "at byte 5");
  bad("[1, 2,]", "at byte 6: expected a value");
  bad("{\"a\": 1,}", "expected a string key");
  bad("{\"a\" 1}", "expected ':'");
  bad("{a: 1}", "expected a string key");
  bad("{\"a\": 1, \"a\": 2}", "at byte 9: duplicate key");
  bad("[1] x", "at byte 4: unexpected trailing characters");
  bad("01", "trailing");
  bad("-", "expected a digit");
  bad("1.", "expected a digit");
  bad(".5", "expected a value");
  bad("1e", "expected a digit");
  bad("+1", "expected a value");
  bad("1e999", "number out of range");
  bad("NaN", "expected a value");
  bad("Infinity", "expected a value");
  bad("tru", "expected a value");
  bad("// c\n1", "expected a value");
  bad("\"abc", "unterminated string");
  bad("\"abc\\", "unterminated string");
  bad("\"a\nb\"", "at byte 2: control character");
  bad(R"("\x")", "at byte 2: invalid escape");
  bad(R"("\u12G4")", "invalid hex digit");
  bad(R"("\u12")", "truncated \\u escape");
  bad(R"("\udc00")", "unpaired low surrogate");
  bad(R"("\ud800")", "unpaired high surrogate");
  bad(R"("\ud800\u0041")", "unpaired high surrogate");
  bad("\"\xC0\x80\"", "invalid UTF-8");         // overlong NUL
  bad("\"\xE0\x80\xAF\"", "invalid UTF-8");     // overlong '/'
  bad("\"\xED\xA0\x80\"", "invalid UTF-8");     // encoded surrogate
  bad("\"\xF4\x90\x80\x80\"", "invalid UTF-8"); // above U+10FFFF
  bad("\"\xE4\xB8\"", "invalid UTF-8");         // truncated sequence
  bad("\"\x80\"", "invalid UTF-8");             // stray continuation byte
  bad("\"\xFF\"", "invalid UTF-8");
}

TEST_CASE("json: invalid UTF-8 is located at the first byte of the bad sequence") {
  auto at = [](const std::string &text) -> std::string {
    try {
      json::parse(text);
    } catch (const Error &e) {
      return e.message();
    }
    return "no error";
  };
  CHECK(at("\"ab\xC0\xAF\"") == "invalid JSON at byte 3: invalid UTF-8");                // overlong '/'
  CHECK(at("\"\xE0\x80\xAF\"") == "invalid JSON at byte 1: invalid UTF-8");              // overlong, 3 bytes
  CHECK(at("\"\xF0\x8F\xBF\xBF\"") == "invalid JSON at byte 1: invalid UTF-8");          // overlong, 4 bytes
  CHECK(at("[\"ok\", \"x\xED\xB0\x80\"]") == "invalid JSON at byte 9: invalid UTF-8");  // U+DC00 encoded
  CHECK(at("\"\xF4\x90\x80\x80\"") == "invalid JSON at byte 1: invalid UTF-8");          // U+110000
  CHECK(at("\"\xF5\x80\x80\x80\"") == "invalid JSON at byte 1: invalid UTF-8");          // lead byte F5
  CHECK(at("{\"k\xC3\xA9\xE4\xB8\": 1}") == "invalid JSON at byte 5: invalid UTF-8");    // cut short in a key
  CHECK(at("\"\xE4\xB8") == "invalid JSON at byte 1: invalid UTF-8");                      // cut short by the end
  CHECK(at("\"\xC3\xA9\x80\"") == "invalid JSON at byte 3: invalid UTF-8");              // stray continuation
}

TEST_CASE("json: \\u escapes encode every length of UTF-8, pairs are joined and lone surrogates refused") {
  CHECK(json::parse(R"("\u007f\u0080\u07FF\u0800\uFFFF")").asString() == "\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF");
  CHECK(json::parse(R"("\ud800\udc00")").asString() == "\xF0\x90\x80\x80");  // U+10000
  CHECK(json::parse(R"("\uDBFF\uDFFF")").asString() == "\xF4\x8F\xBF\xBF");  // U+10FFFF
  CHECK(json::parse(R"("\ud83d\ude42!")").asString() == "\xF0\x9F\x99\x82!"); // U+1F642
  CHECK(json::parse(R"("\u0141\u0401")").asString() == "\xC5\x81\xD0\x81");  // Ł Ё
  auto bad = [](const std::string &text, const char *msg) {
    CAPTURE(text);
    CHECK_THROWS_WITH_AS(json::parse(text), msg, Error);
  };
  bad(R"("ab\udc00")", "invalid JSON at byte 9: unpaired low surrogate");
  bad(R"("\ud83d")", "invalid JSON at byte 7: unpaired high surrogate");
  bad(R"("\ud83d\ud83d")", "invalid JSON at byte 13: unpaired high surrogate"); // two highs
  bad(R"("\ud83dx")", "invalid JSON at byte 7: unpaired high surrogate");
}

TEST_CASE("json: nesting depth is bounded") {
  std::string ok = std::string(64, '[') + std::string(64, ']');
  CHECK(json::parse(ok).isArray());
  std::string deep = std::string(65, '[') + std::string(65, ']');
  CHECK_THROWS_WITH_AS(json::parse(deep), doctest::Contains("at byte 64: nesting deeper than 64"), Error);
  // Far beyond any stack: must fail fast, not crash.
  CHECK_THROWS_AS(json::parse(std::string(1000000, '[')), Error);
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  CHECK_THROWS_WITH_AS(json::parse(objects), doctest::Contains("nesting deeper than 64"), Error);
  CHECK(json::parse("[[1]]", 2).isArray());
  CHECK_THROWS_AS(json::parse("[[[1]]]", 2), Error);
}

TEST_CASE("json: accessors of the wrong kind throw") {
  json::Value v = json::parse(R"({"n": 1})");
  CHECK_THROWS_WITH_AS(v.asString(), "expected a JSON string, got object", Error);
  CHECK_THROWS_WITH_AS(v.find("n")->asArray(), "expected a JSON array, got number", Error);
  CHECK_THROWS_WITH_AS(v.find("n")->asBool(), "expected a JSON bool, got number", Error);
  CHECK_THROWS_WITH_AS(json::parse("\"1\"").asInt(), "expected a JSON integer, got string", Error);
  CHECK_THROWS_AS(json::parse("null").asObject(), Error);
  CHECK_THROWS_AS(json::parse("[]").asDouble(), Error);
}

TEST_CASE("json: quote and write") {
  CHECK(json::quote("plain") == "\"plain\"");
  CHECK(json::quote("a\"b\\c\n\t\x01\x1f") == R"("a\"b\\c\n\t\u0001\u001f")");
  CHECK(json::quote("\xC3\xA9") == "\"\xC3\xA9\""); // UTF-8 passes through
  std::string nasty = std::string("k\0\x7f\"\\/\b\f\r\xE2\x82\xAC", 12);
  CHECK(json::parse(json::quote(nasty)).asString() == nasty);

  json::Object o;
  o["b"] = json::Array{1, 2.5, true, nullptr, "s"};
  o["a"] = json::Object{{"x", -7}};
  json::Value v(std::move(o));
  CHECK(json::write(v) == R"({"a":{"x":-7},"b":[1,2.5,true,null,"s"]})");
  CHECK(json::write(json::parse(json::write(v))) == json::write(v));
  CHECK(json::write(json::Value(0.1)) == "0.1");
  CHECK(json::parse(json::write(json::Value(1.0 / 3.0))).asDouble() == 1.0 / 3.0);
  CHECK(json::write(json::Value(int64_t{1} << 62)) == "4611686018427387904");
  CHECK_THROWS_AS(json::write(json::Value(std::numeric_limits<double>::infinity())), Error);
  CHECK_THROWS_AS(json::write(json::Value(std::nan(""))), Error);
}
