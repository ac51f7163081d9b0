//===- frontend/lexer.cpp - tokens of the kiln DSL ------------------------===//
//
// A single forward scan; see lexer.h. Operators are matched longest first.
//
//===----------------------------------------------------------------------===//
#include "frontend/lexer.h"

#include <cctype>
#include <cmath>
#include <fmt/format.h>

namespace kiln::frontend {

namespace {
const char *const keywords[] = {"param", "module", "model", "fn", "let", "return", "true", "false"};
const char *const operators[] = {"->", "==", "!=", "<=", ">=", "(", ")", "{", "}", "[", "]", ",", ":",
                                 ";",  "=",  "+",  "-",  "*",  "/", "@", "<", ">"};

bool isIdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool isIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
} // namespace

std::vector<Token> tokenize(const std::string &text, const std::string &file) {
  std::vector<Token> out;
  size_t pos = 0;
  int line = 1, col = 1;
  auto advance = [&](size_t n) {
    for (size_t i = 0; i < n && pos < text.size(); ++i, ++pos) {
      if (text[pos] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
  };
  while (true) {
    while (pos < text.size()) {
      char c = text[pos];
      if (c == '#') {
        while (pos < text.size() && text[pos] != '\n') advance(1);
      } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        advance(1);
      } else {
        break;
      }
    }
    Token t;
    t.loc = {file, line, col};
    if (pos >= text.size()) {
      out.push_back(t);
      return out;
    }
    char c = text[pos];
    if (isIdentStart(c)) {
      size_t start = pos;
      while (pos < text.size() && isIdentChar(text[pos])) advance(1);
      t.text = text.substr(start, pos - start);
      t.kind = TokKind::Ident;
      for (const char *k : keywords)
        if (t.text == k) t.kind = TokKind::Keyword;
      out.push_back(std::move(t));
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c)) ||
        (c == '.' && pos + 1 < text.size() && std::isdigit(static_cast<unsigned char>(text[pos + 1])))) {
      size_t start = pos;
      bool isFloat = false;
      while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) advance(1);
      if (pos < text.size() && text[pos] == '.') {
        isFloat = true;
        advance(1);
        while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) advance(1);
      }
      if (pos < text.size() && (text[pos] == 'e' || text[pos] == 'E')) {
        isFloat = true;
        advance(1);
        if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) advance(1);
        if (pos >= text.size() || !std::isdigit(static_cast<unsigned char>(text[pos])))
          throw Error("malformed number: expected digits after the exponent", t.loc);
        while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) advance(1);
      }
      if (pos < text.size() && isIdentChar(text[pos]))
        throw Error(fmt::format("malformed number '{}'", text.substr(start, pos - start + 1)), t.loc);
      t.text = text.substr(start, pos - start);
      t.kind = isFloat ? TokKind::Float : TokKind::Int;
      t.number = std::strtod(t.text.c_str(), nullptr);
      if (!std::isfinite(t.number) || (!isFloat && t.number > 9.0e15))
        throw Error(fmt::format("number '{}' is too large", t.text), t.loc);
      out.push_back(std::move(t));
      continue;
    }
    bool matched = false;
    for (const char *op : operators) {
      size_t n = std::char_traits<char>::length(op);
      if (text.compare(pos, n, op) == 0) {
        t.kind = TokKind::Punct;
        t.text = op;
        advance(n);
        out.push_back(std::move(t));
        matched = true;
        break;
      }
    }
    if (matched) continue;
    unsigned char u = static_cast<unsigned char>(c);
    std::string shown = (u >= 0x20 && u < 0x7f) ? fmt::format("'{}'", c) : fmt::format("byte 0x{:02x}", u);
    throw Error(fmt::format("unexpected character {}", shown), t.loc);
  }
}

} // namespace kiln::frontend
