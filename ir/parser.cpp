//===- ir/parser.cpp - reads the textual IR back --------------------------===//
//
// A small hand-written lexer and recursive-descent parser for the grammar:
//
//   module  := graph*
//   graph   := 'graph' '@' NAME '(' [input (',' input)*] ')' '{' stmt* '}'
//   input   := VALUE ':' type
//   stmt    := 'param' VALUE ':' type [attrs]
//            | VALUE (',' VALUE)* '=' OP '(' [VALUE (',' VALUE)*] ')' [attrs] ':' type (',' type)* [loc]
//            | 'output' NAME '=' VALUE
//            | 'explain' VALUE                (a value marked for explanation)
//   type    := DTYPE '[' [dim (',' dim)*] ']'
//   attrs   := '{' NAME '=' attr (',' NAME '=' attr)* '}'
//   loc     := 'loc' '(' STRING ':' INT ':' INT (',' STRING ':' INT ':' INT)* ')'
//
// `#` starts a comment that runs to the end of the line.
//
//===----------------------------------------------------------------------===//
#include "ir/parser.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fmt/format.h>
#include <map>

namespace kiln::ir {

namespace {

enum class Tok { End, Ident, Global, Local, Int, Float, String, Punct };

struct Token {
  Tok kind = Tok::End;
  std::string text; // identifier/name/string contents, or the punctuation char
  int64_t intValue = 0;
  double floatValue = 0;
  SourceLoc loc;
};

class Lexer {
public:
  Lexer(const std::string &text, const std::string &file) : text_(text), file_(file) {}

  Token next() {
    skipSpace();
    Token t;
    t.loc = {file_, line_, col_};
    if (pos_ >= text_.size()) return t;
    char c = text_[pos_];
    if (c == '@' || c == '%') {
      advance();
      t.kind = c == '@' ? Tok::Global : Tok::Local;
      t.text = takeWhile([](char ch) { return std::isalnum((unsigned char)ch) || ch == '_' || ch == '.'; });
      if (t.text.empty()) throw Error(fmt::format("expected a name after '{}'", c), t.loc);
      return t;
    }
    if (std::isalpha((unsigned char)c) || c == '_') {
      t.kind = Tok::Ident;
      // Output names may be dotted like parameter names (`embedding.weight`).
      t.text = takeWhile([](char ch) { return std::isalnum((unsigned char)ch) || ch == '_' || ch == '.'; });
      if (t.text == "inf" || t.text == "nan") {
        t.kind = Tok::Float;
        t.floatValue = t.text == "inf" ? INFINITY : NAN;
      }
      return t;
    }
    if (std::isdigit((unsigned char)c) || (c == '-' && pos_ + 1 < text_.size() &&
                                           (std::isdigit((unsigned char)text_[pos_ + 1]) || text_[pos_ + 1] == 'i'))) {
      return number(t);
    }
    if (c == '"') return string(t);
    if (std::string("(){}[],:=+").find(c) != std::string::npos) {
      advance();
      t.kind = Tok::Punct;
      t.text = std::string(1, c);
      return t;
    }
    throw Error(fmt::format("unexpected character '{}'", printable(c)), t.loc);
  }

private:
  static std::string printable(char c) {
    unsigned char u = static_cast<unsigned char>(c);
    return (u >= 0x20 && u < 0x7f) ? std::string(1, c) : fmt::format("\\x{:02x}", u);
  }

  void advance() {
    if (text_[pos_] == '\n') {
      ++line_;
      col_ = 1;
    } else {
      ++col_;
    }
    ++pos_;
  }

  void skipSpace() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == '#') {
        while (pos_ < text_.size() && text_[pos_] != '\n') advance();
      } else if (std::isspace((unsigned char)c)) {
        advance();
      } else {
        break;
      }
    }
  }

  template <typename Pred> std::string takeWhile(Pred p) {
    size_t start = pos_;
    while (pos_ < text_.size() && p(text_[pos_])) advance();
    return text_.substr(start, pos_ - start);
  }

  Token number(Token &t) {
    size_t start = pos_;
    if (text_[pos_] == '-') advance();
    if (pos_ < text_.size() && text_[pos_] == 'i') {
      std::string word = takeWhile([](char ch) { return std::isalpha((unsigned char)ch); });
      if (word != "inf") throw Error("malformed number", t.loc);
      t.kind = Tok::Float;
      t.floatValue = -INFINITY;
      return t;
    }
    bool isFloat = false;
    while (pos_ < text_.size()) {
      char ch = text_[pos_];
      if (std::isdigit((unsigned char)ch)) {
        advance();
      } else if (ch == '.' || ch == 'e' || ch == 'E') {
        isFloat = true;
        advance();
        if ((ch == 'e' || ch == 'E') && pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) advance();
      } else {
        break;
      }
    }
    std::string s = text_.substr(start, pos_ - start);
    try {
      size_t used = 0;
      if (isFloat) {
        t.kind = Tok::Float;
        t.floatValue = std::stod(s, &used);
      } else {
        t.kind = Tok::Int;
        t.intValue = std::stoll(s, &used);
      }
      if (used != s.size()) throw std::invalid_argument(s);
    } catch (const std::exception &) {
      throw Error("malformed number '" + s + "'", t.loc);
    }
    return t;
  }

  Token string(Token &t) {
    advance(); // opening quote
    std::string out;
    while (true) {
      if (pos_ >= text_.size() || text_[pos_] == '\n') throw Error("unterminated string", t.loc);
      char c = text_[pos_];
      advance();
      if (c == '"') break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) throw Error("unterminated string", t.loc);
      char e = text_[pos_];
      advance();
      if (e == 'x') {
        if (pos_ + 2 > text_.size() || !std::isxdigit((unsigned char)text_[pos_]) ||
            !std::isxdigit((unsigned char)text_[pos_ + 1]))
          throw Error("malformed \\x escape in string", t.loc);
        out += static_cast<char>(std::stoi(text_.substr(pos_, 2), nullptr, 16));
        advance();
        advance();
      } else {
        out += e;
      }
    }
    t.kind = Tok::String;
    t.text = out;
    return t;
  }

  const std::string &text_;
  std::string file_;
  size_t pos_ = 0;
  int line_ = 1, col_ = 1;
};

class Parser {
public:
  Parser(const std::string &text, const std::string &file) : lex_(text, file) { tok_ = lex_.next(); }

  Module parseModule() {
    Module m;
    while (tok_.kind != Tok::End) {
      if (!isIdent("graph")) fail("expected 'graph'");
      parseGraph(m);
    }
    return m;
  }

private:
  [[noreturn]] void fail(const std::string &msg) { throw Error(msg, tok_.loc); }
  void bump() { tok_ = lex_.next(); }
  bool isIdent(const char *word) const { return tok_.kind == Tok::Ident && tok_.text == word; }
  bool isPunct(char c) const { return tok_.kind == Tok::Punct && tok_.text[0] == c; }
  void expectPunct(char c) {
    if (!isPunct(c)) fail(fmt::format("expected '{}'", c));
    bump();
  }
  std::string expect(Tok kind, const char *what) {
    if (tok_.kind != kind) fail(fmt::format("expected {}", what));
    std::string s = tok_.text;
    bump();
    return s;
  }
  int64_t expectInt(const char *what) {
    if (tok_.kind != Tok::Int) fail(fmt::format("expected {}", what));
    int64_t v = tok_.intValue;
    bump();
    return v;
  }

  TensorType parseType() {
    if (tok_.kind != Tok::Ident) fail("expected a type such as f32[B,T]");
    auto dt = parseDType(tok_.text);
    if (!dt) fail("unknown element type '" + tok_.text + "' (expected f32, i32 or bool)");
    bump();
    return {*dt, parseDims()};
  }

  /// `4`, `T`, `T-2` (the lexer reads `-2` as one integer) or `T+1`.
  Dim parseDim() {
    if (tok_.kind == Tok::Int) {
      if (tok_.intValue < 0) fail("dims must not be negative");
      Dim d = Dim::constant(tok_.intValue);
      bump();
      return d;
    }
    if (tok_.kind != Tok::Ident) fail("expected a dim (an integer, a symbol or a symbol plus or minus an integer)");
    std::string symbol = tok_.text;
    bump();
    int64_t offset = 0;
    if (tok_.kind == Tok::Int && tok_.intValue < 0) {
      offset = tok_.intValue;
      bump();
    } else if (isPunct('+')) {
      bump();
      if (tok_.kind != Tok::Int || tok_.intValue < 0) fail("expected an integer after '+' in a dim");
      offset = tok_.intValue;
      bump();
    }
    // Offsets are small (kernel widths); a bound keeps dim arithmetic far
    // from overflow whatever the text says.
    if (offset < -(int64_t(1) << 40) || offset > (int64_t(1) << 40)) fail("a dim's offset must be within 2^40");
    return Dim::named(symbol, offset);
  }

  Shape parseDims() {
    expectPunct('[');
    Shape s;
    while (!isPunct(']')) {
      if (!s.empty()) expectPunct(',');
      s.push_back(parseDim());
    }
    bump();
    return s;
  }

  Attr parseAttr() {
    if (tok_.kind == Tok::Int) {
      int64_t v = tok_.intValue;
      bump();
      return v;
    }
    if (tok_.kind == Tok::Float) {
      double v = tok_.floatValue;
      bump();
      return v;
    }
    if (tok_.kind == Tok::String) {
      std::string v = tok_.text;
      bump();
      return v;
    }
    if (isIdent("true") || isIdent("false")) {
      bool v = tok_.text == "true";
      bump();
      return v;
    }
    if (isPunct('[')) return parseDims();
    if (tok_.kind == Tok::Ident) return parseDim();
    fail("expected an attribute value");
  }

  /// An op's attributes are checked against its declaration in ops.def as
  /// they are read, so that an error points at the attribute; a parameter's
  /// (its initialiser) are not declared anywhere.
  Attrs parseAttrDict(std::optional<OpKind> op = std::nullopt) {
    Attrs attrs;
    if (!isPunct('{')) return attrs;
    bump();
    while (!isPunct('}')) {
      if (!attrs.empty()) expectPunct(',');
      SourceLoc keyLoc = tok_.loc;
      std::string key = expect(Tok::Ident, "an attribute name");
      expectPunct('=');
      Attr value = parseAttr();
      if (op) {
        try {
          checkAttr(*op, key, value);
        } catch (const Error &e) {
          throw Error(e.message(), keyLoc);
        }
      }
      if (!attrs.emplace(key, std::move(value)).second) fail("attribute '" + key + "' is given twice");
    }
    bump();
    return attrs;
  }

  ValueId lookup(const std::map<std::string, ValueId> &names) {
    if (tok_.kind != Tok::Local) fail("expected a value such as %x");
    auto it = names.find(tok_.text);
    if (it == names.end()) fail("use of undefined value %" + tok_.text);
    bump();
    return it->second;
  }

  static bool isNumeric(const std::string &s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit((unsigned char)c); });
  }

  void define(std::map<std::string, ValueId> &names, const std::string &name, ValueId v, const SourceLoc &loc) {
    if (!names.emplace(name, v).second) throw Error("value %" + name + " is defined twice", loc);
  }

  void parseGraph(Module &m) {
    bump(); // graph
    SourceLoc graphLoc = tok_.loc;
    std::string name = expect(Tok::Global, "a graph name such as @forward");
    if (m.find(name)) throw Error("graph @" + name + " is defined twice", graphLoc);
    Graph &g = m.addGraph(name);
    std::map<std::string, ValueId> names;
    expectPunct('(');
    while (!isPunct(')')) {
      if (!g.inputs().empty()) expectPunct(',');
      SourceLoc loc = tok_.loc;
      std::string in = expect(Tok::Local, "an input such as %tokens");
      if (isNumeric(in)) throw Error("inputs must have names, not numbers", loc);
      expectPunct(':');
      ValueId v = g.addInput(in, parseType());
      g.value(v).attrs = parseAttrDict(); // a derived input's recipe (frontend/lower.cpp derivedInput)
      define(names, in, v, loc);
    }
    bump();
    expectPunct('{');
    while (!isPunct('}')) {
      if (tok_.kind == Tok::End) fail("expected '}' to close graph @" + name);
      if (isIdent("param")) {
        bump();
        SourceLoc loc = tok_.loc;
        std::string p = expect(Tok::Local, "a parameter name");
        if (isNumeric(p)) throw Error("parameters must have names, not numbers", loc);
        expectPunct(':');
        TensorType t = parseType();
        for (const Dim &d : t.shape)
          if (d.isSymbolic()) throw Error("parameter %" + p + " must have constant dims", loc);
        define(names, p, g.addParam(p, t, parseAttrDict()), loc);
      } else if (isIdent("output")) {
        bump();
        std::string out = expect(Tok::Ident, "an output name");
        for (const Output &o : g.outputs())
          if (o.name == out) fail("output '" + out + "' is defined twice");
        expectPunct('=');
        g.addOutput(out, lookup(names));
      } else if (isIdent("explain")) {
        bump();
        g.markExplained(lookup(names));
      } else {
        parseNode(g, names);
      }
    }
    bump();
  }

  void parseNode(Graph &g, std::map<std::string, ValueId> &names) {
    SourceLoc defLoc = tok_.loc;
    std::vector<std::pair<std::string, SourceLoc>> resultNames;
    resultNames.push_back({expect(Tok::Local, "a statement (param, output or %value = op(...))"), defLoc});
    while (isPunct(',')) { // %a, %b = op(...): an op with several results
      bump();
      SourceLoc loc = tok_.loc;
      resultNames.push_back({expect(Tok::Local, "a result name"), loc});
    }
    expectPunct('=');
    SourceLoc opLoc = tok_.loc;
    std::string opText = expect(Tok::Ident, "an op name");
    auto op = opByName(opText);
    if (!op) {
      std::vector<std::string> known;
      for (const OpInfo &i : allOps()) known.push_back(i.name);
      std::string hint = nearestName(opText, known);
      throw Error("unknown op '" + opText + "'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?"), opLoc);
    }
    expectPunct('(');
    std::vector<ValueId> operands;
    while (!isPunct(')')) {
      if (!operands.empty()) expectPunct(',');
      operands.push_back(lookup(names));
    }
    bump();
    Attrs attrs = parseAttrDict(*op);
    expectPunct(':');
    SourceLoc typeLoc = tok_.loc;
    std::vector<TensorType> written{parseType()};
    while (isPunct(',')) {
      bump();
      written.push_back(parseType());
    }
    std::vector<SourceLoc> locs;
    if (isIdent("loc")) {
      bump();
      expectPunct('(');
      while (!isPunct(')')) {
        if (!locs.empty()) expectPunct(',');
        SourceLoc l;
        l.file = expect(Tok::String, "a quoted file name");
        expectPunct(':');
        l.line = static_cast<int>(expectInt("a line number"));
        expectPunct(':');
        l.col = static_cast<int>(expectInt("a column number"));
        locs.push_back(l);
      }
      bump();
    }
    std::vector<TensorType> types;
    for (ValueId v : operands) types.push_back(g.type(v));
    std::vector<TensorType> inferred;
    try {
      inferred = inferTypes(*op, types, attrs);
    } catch (const Error &e) {
      throw Error(e.message(), opLoc);
    }
    if (inferred.size() != resultNames.size())
      throw Error(fmt::format("{} has {} result{}, {} {} named", opText, inferred.size(), inferred.size() == 1 ? "" : "s",
                              resultNames.size(), resultNames.size() == 1 ? "is" : "are"),
                  defLoc);
    auto typesStr = [](const std::vector<TensorType> &ts) {
      std::string out;
      for (const TensorType &t : ts) out += (out.empty() ? "" : ", ") + t.str();
      return out;
    };
    if (inferred != written)
      throw Error(fmt::format("result type {} does not match the inferred type {}", typesStr(written), typesStr(inferred)),
                  typeLoc);
    std::vector<std::string> valueNames;
    for (const auto &[name, loc] : resultNames) valueNames.push_back(isNumeric(name) ? std::string() : name);
    std::vector<ValueId> vs =
        g.addMultiNode(*op, std::move(operands), std::move(attrs), inferred, std::move(locs), valueNames);
    for (size_t r = 0; r < vs.size(); ++r) define(names, resultNames[r].first, vs[r], resultNames[r].second);
  }

  Lexer lex_;
  Token tok_;
};

} // namespace

Module parseModule(const std::string &text, const std::string &file) {
  Parser p(text, file);
  return p.parseModule();
}

} // namespace kiln::ir
