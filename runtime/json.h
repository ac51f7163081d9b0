//===- runtime/json.h - a small, strict JSON value and parser ---*- C++ -*-===//
//
// JSON as kiln reads it from files it did not write: safetensors headers,
// JSON Lines data files and checkpoint metadata. The parser follows RFC 8259
// strictly (no comments, trailing commas, NaN or duplicate keys; strings must
// be valid UTF-8), bounds nesting depth so that hostile input cannot exhaust
// the stack, and reports every problem as kiln::Error with the byte offset.
// Numbers keep their double value and, when written as an integer literal
// that fits, the exact int64 as well, so that offsets beyond 2^53 survive.
//
//   json::Value v = json::parse(R"({"label": "spam", "ids": [1, 2]})");
//   if (const json::Value *l = v.find("label")) use(l->asString());
//   std::string out = json::write(v); // {"ids":[1,2],"label":"spam"}
//
//===----------------------------------------------------------------------===//
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace kiln::json {

class Value;
using Array = std::vector<Value>;
/// Members by key; ordered, so that writing is deterministic.
using Object = std::map<std::string, Value, std::less<>>;

enum class Kind : uint8_t { Null, Bool, Number, String, Array, Object };

class Value {
public:
  Value(std::nullptr_t = nullptr) {}
  Value(bool b) : v_(b) {}
  Value(double d) : v_(Number{d, std::nullopt}) {}
  template <std::integral I>
    requires(!std::same_as<I, bool>)
  Value(I i) : v_(Number{static_cast<double>(i), static_cast<int64_t>(i)}) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(const char *s) : v_(std::string(s)) {}
  Value(Array a) : v_(std::move(a)) {}
  Value(Object o) : v_(std::move(o)) {}

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool isNull() const { return kind() == Kind::Null; }
  bool isBool() const { return kind() == Kind::Bool; }
  bool isNumber() const { return kind() == Kind::Number; }
  /// A number written as an integer literal (no fraction or exponent) that
  /// fits in int64; `2.0` and `1e3` are numbers but not integers.
  bool isInt() const { return isNumber() && std::get<Number>(v_).exact.has_value(); }
  bool isString() const { return kind() == Kind::String; }
  bool isArray() const { return kind() == Kind::Array; }
  bool isObject() const { return kind() == Kind::Object; }

  // Accessors throw kiln::Error naming both kinds when the value is of
  // another kind, so that callers may use them directly on untrusted input.
  bool asBool() const;
  double asDouble() const;
  int64_t asInt() const;
  const std::string &asString() const;
  const Array &asArray() const;
  const Object &asObject() const;
  Array &asArray();
  Object &asObject();

  /// The member `key` of an object; nullptr when absent or not an object.
  const Value *find(std::string_view key) const;
  /// Elements of an array or members of an object; 0 otherwise.
  size_t size() const;

private:
  struct Number {
    double value;
    std::optional<int64_t> exact;
  };
  // Alternative order matches Kind.
  std::variant<std::nullptr_t, bool, Number, std::string, Array, Object> v_;
};

const char *kindName(Kind k);

/// Parses one JSON text (surrounding whitespace allowed). Throws kiln::Error
/// `invalid JSON at byte N: ...` on any deviation from the grammar.
Value parse(std::string_view text, int maxDepth = 64);

/// `s` as a JSON string literal, quotes included. `s` is taken to be UTF-8
/// and passed through; only quote, backslash and control bytes are escaped.
std::string quote(std::string_view s);

/// Compact JSON text (no whitespace); throws kiln::Error for a non-finite
/// number, which JSON cannot represent.
std::string write(const Value &v);

} // namespace kiln::json
