//===- runtime/json.cpp - a small, strict JSON value and parser ------------===//
//
// A recursive-descent parser over a string_view. Every read is bounds-checked
// against the end of the text, recursion is bounded by maxDepth, and nothing
// is allocated beyond what the text itself contains, so a hostile or truncated
// input yields a kiln::Error with a byte offset, never a crash.
//
//===----------------------------------------------------------------------===//
#include "runtime/json.h"

#include "ir/diagnostic.h"
#include "runtime/utf8.h"

#include <charconv>
#include <cmath>
#include <utility>

namespace kiln::json {

const char *kindName(Kind k) {
  static const char *const names[] = {"null", "bool", "number", "string", "array", "object"};
  return names[static_cast<int>(k)];
}

namespace {

[[noreturn]] void wrongKind(Kind want, Kind got) {
  throw Error(std::string("expected a JSON ") + kindName(want) + ", got " + kindName(got));
}

class Parser {
public:
  Parser(std::string_view s, int maxDepth) : s_(s), maxDepth_(maxDepth) {}

  Value parseDocument() {
    Value v = parseValue(0);
    skipSpace();
    if (pos_ != s_.size()) fail("unexpected trailing characters");
    return v;
  }

private:
  std::string_view s_;
  size_t pos_ = 0;
  int maxDepth_;

  [[noreturn]] void fail(const std::string &msg) const {
    throw Error("invalid JSON at byte " + std::to_string(pos_) + ": " + msg);
  }
  bool atEnd() const { return pos_ >= s_.size(); }
  unsigned char peek() const { return atEnd() ? 0 : static_cast<unsigned char>(s_[pos_]); }
  void skipSpace() {
    while (!atEnd() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++pos_;
  }
  void expect(char c) {
    if (atEnd()) fail(std::string("expected '") + c + "', got end of input");
    if (peek() != static_cast<unsigned char>(c)) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  bool consume(char c) {
    if (atEnd() || s_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  bool consumeWord(std::string_view w) {
    if (s_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }

  Value parseValue(int depth) {
    skipSpace();
    if (atEnd()) fail("expected a value, got end of input");
    char c = static_cast<char>(peek());
    if (c == '{' || c == '[') {
      // Depth bounds recursion: a hostile `[[[[...` cannot overflow the stack.
      if (depth >= maxDepth_) fail("nesting deeper than " + std::to_string(maxDepth_));
      return c == '{' ? parseObject(depth + 1) : parseArray(depth + 1);
    }
    if (c == '"') return parseString();
    if (c == '-' || (c >= '0' && c <= '9')) return parseNumber();
    if (consumeWord("true")) return true;
    if (consumeWord("false")) return false;
    if (consumeWord("null")) return nullptr;
    fail("expected a value");
  }

  Value parseObject(int depth) {
    Object obj;
    expect('{');
    skipSpace();
    if (consume('}')) return obj;
    for (;;) {
      skipSpace();
      size_t keyPos = pos_;
      if (peek() != '"') fail("expected a string key");
      std::string key = parseString();
      skipSpace();
      expect(':');
      Value v = parseValue(depth);
      // Duplicates are an error: RFC 8259 leaves their meaning open, and a
      // reader that silently keeps one could be fooled into another's view.
      if (!obj.emplace(std::move(key), std::move(v)).second) {
        pos_ = keyPos;
        fail("duplicate key");
      }
      skipSpace();
      if (consume('}')) return obj;
      expect(',');
    }
  }

  Value parseArray(int depth) {
    Array arr;
    expect('[');
    skipSpace();
    if (consume(']')) return arr;
    for (;;) {
      arr.push_back(parseValue(depth));
      skipSpace();
      if (consume(']')) return arr;
      expect(',');
    }
  }

  Value parseNumber() {
    size_t start = pos_;
    auto digits = [&] {
      size_t from = pos_;
      while (!atEnd() && peek() >= '0' && peek() <= '9') ++pos_;
      if (pos_ == from) fail("expected a digit");
    };
    consume('-');
    if (!consume('0')) digits(); // no leading zeros: `01` is not JSON
    bool integral = true;
    if (consume('.')) {
      digits();
      integral = false;
    }
    if (consume('e') || consume('E')) {
      if (!consume('+')) consume('-');
      digits();
      integral = false;
    }
    const char *b = s_.data() + start, *e = s_.data() + pos_;
    double d = 0;
    auto r = std::from_chars(b, e, d);
    // Out of range means beyond double's exponent; JSON has no infinities.
    if (r.ec != std::errc() || !std::isfinite(d)) {
      pos_ = start;
      fail("number out of range");
    }
    Value v(d);
    int64_t i = 0;
    if (integral && std::from_chars(b, e, i).ec == std::errc()) v = Value(i);
    return v;
  }

  uint32_t hex4() {
    if (s_.size() - pos_ < 4) fail("truncated \\u escape");
    uint32_t cp = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[pos_];
      int h = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      if (h < 0) fail("invalid hex digit in \\u escape");
      cp = cp * 16 + static_cast<uint32_t>(h);
      ++pos_;
    }
    return cp;
  }

  // One UTF-8 sequence starting at pos_, validated by runtime/utf8.h (no
  // overlongs, no surrogates, nothing above U+10FFFF) and copied to out; an
  // ill-formed one is reported at its first byte.
  void copyUtf8(std::string &out) {
    size_t length = utf8::decodeAt(s_, pos_).length;
    if (length == 0) fail("invalid UTF-8");
    out.append(s_.substr(pos_, length));
    pos_ += length;
  }

  std::string parseString() {
    std::string out;
    expect('"');
    for (;;) {
      if (atEnd()) fail("unterminated string");
      unsigned char c = peek();
      if (consume('"')) return out;
      if (c < 0x20) fail("control character in string");
      if (c != '\\') {
        copyUtf8(out);
        continue;
      }
      ++pos_;
      if (atEnd()) fail("unterminated string");
      char e = s_[pos_++];
      switch (e) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '/': out += '/'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        uint32_t cp = hex4();
        if (cp >= 0xDC00 && cp <= 0xDFFF) fail("unpaired low surrogate");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (!consumeWord("\\u")) fail("unpaired high surrogate");
          uint32_t lo = hex4();
          if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired high surrogate");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        utf8::append(out, cp); // a scalar value: surrogates were paired above
        break;
      }
      default:
        --pos_;
        fail("invalid escape");
      }
    }
  }
};

} // namespace

bool Value::asBool() const {
  if (!isBool()) wrongKind(Kind::Bool, kind());
  return std::get<bool>(v_);
}
double Value::asDouble() const {
  if (!isNumber()) wrongKind(Kind::Number, kind());
  return std::get<Number>(v_).value;
}
int64_t Value::asInt() const {
  if (!isInt())
    throw Error(std::string("expected a JSON integer, got ") +
                (isNumber() ? "a non-integer number" : kindName(kind())));
  return *std::get<Number>(v_).exact;
}
const std::string &Value::asString() const {
  if (!isString()) wrongKind(Kind::String, kind());
  return std::get<std::string>(v_);
}
const Array &Value::asArray() const {
  if (!isArray()) wrongKind(Kind::Array, kind());
  return std::get<Array>(v_);
}
const Object &Value::asObject() const {
  if (!isObject()) wrongKind(Kind::Object, kind());
  return std::get<Object>(v_);
}
Array &Value::asArray() { return const_cast<Array &>(std::as_const(*this).asArray()); }
Object &Value::asObject() { return const_cast<Object &>(std::as_const(*this).asObject()); }

const Value *Value::find(std::string_view key) const {
  if (!isObject()) return nullptr;
  const Object &o = std::get<Object>(v_);
  auto it = o.find(key);
  return it == o.end() ? nullptr : &it->second;
}

size_t Value::size() const {
  if (isArray()) return std::get<Array>(v_).size();
  if (isObject()) return std::get<Object>(v_).size();
  return 0;
}

Value parse(std::string_view text, int maxDepth) { return Parser(text, maxDepth).parseDocument(); }

std::string quote(std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\b': out += "\\b"; break;
    case '\f': out += "\\f"; break;
    case '\n': out += "\\n"; break;
    case '\r': out += "\\r"; break;
    case '\t': out += "\\t"; break;
    default:
      if (c < 0x20) out += std::string("\\u00") + hex[c >> 4] + hex[c & 0xF];
      else out += ch;
    }
  }
  return out + "\"";
}

std::string write(const Value &v) {
  switch (v.kind()) {
  case Kind::Null: return "null";
  case Kind::Bool: return v.asBool() ? "true" : "false";
  case Kind::Number: {
    if (v.isInt()) return std::to_string(v.asInt());
    double d = v.asDouble();
    if (!std::isfinite(d)) throw Error("cannot write a non-finite number as JSON");
    char buf[32];
    // Shortest text that parses back to the same double.
    auto r = std::to_chars(buf, buf + sizeof buf, d);
    return std::string(buf, r.ptr);
  }
  case Kind::String: return quote(v.asString());
  case Kind::Array: {
    std::string out = "[";
    for (const Value &e : v.asArray()) out += (out.size() > 1 ? "," : "") + write(e);
    return out + "]";
  }
  case Kind::Object: {
    std::string out = "{";
    for (const auto &[k, e] : v.asObject()) out += (out.size() > 1 ? "," : "") + quote(k) + ":" + write(e);
    return out + "}";
  }
  }
  return "null";
}

} // namespace kiln::json
