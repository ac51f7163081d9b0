//===- frontend/parser.cpp - the kiln DSL parser --------------------------===//
//
// See parser.h for the grammar. Each parse function consumes exactly its
// production and reports the first unexpected token.
//
//===----------------------------------------------------------------------===//
#include "frontend/parser.h"

#include "frontend/lexer.h"

#include <algorithm>
#include <fmt/format.h>

namespace kiln::frontend {

namespace {

constexpr int maxNesting = 200;

class Parser {
public:
  Parser(const std::string &text, const std::string &file) : toks_(tokenize(text, file)) { prog_.file = file; }

  Program run() {
    if (peek().kind == TokKind::End)
      throw Error("empty model: expected 'param', 'module', 'model' or 'fn'", peek().loc);
    while (peek().kind != TokKind::End) {
      if (isKeyword("param")) parseHyperParam();
      else if (isKeyword("module") || isKeyword("model")) prog_.modules.push_back(parseModule());
      else if (isKeyword("fn")) prog_.functions.push_back(parseFunction());
      else if (peek().kind == TokKind::Ident && peek().text == "train" && isPunct("{", 1)) parseRecipe();
      else fail("expected 'param', 'module', 'model', 'fn' or 'train {' at top level");
    }
    return std::move(prog_);
  }

private:
  const Token &peek(size_t ahead = 0) const { return toks_[std::min(pos_ + ahead, toks_.size() - 1)]; }
  Token take() {
    Token t = peek();
    if (pos_ < toks_.size() - 1) ++pos_;
    return t;
  }
  bool isKeyword(const char *k) const { return peek().kind == TokKind::Keyword && peek().text == k; }
  bool isPunct(const char *p, size_t ahead = 0) const {
    return peek(ahead).kind == TokKind::Punct && peek(ahead).text == p;
  }

  static std::string describe(const Token &t) {
    switch (t.kind) {
    case TokKind::End: return "end of file";
    case TokKind::Ident: return "name '" + t.text + "'";
    case TokKind::Keyword: return "keyword '" + t.text + "'";
    case TokKind::Int:
    case TokKind::Float: return "number " + t.text;
    case TokKind::Punct: return "'" + t.text + "'";
    }
    return "token";
  }

  [[noreturn]] void fail(const std::string &what) {
    throw Error(fmt::format("{}, found {}", what, describe(peek())), peek().loc);
  }

  void expectPunct(const char *p, const char *context = nullptr) {
    if (!isPunct(p)) fail(context ? fmt::format("expected '{}' {}", p, context) : fmt::format("expected '{}'", p));
    take();
  }

  Token expectIdent(const char *what) {
    if (peek().kind != TokKind::Ident) fail(fmt::format("expected {}", what));
    return take();
  }

  void parseHyperParam() {
    SourceLoc loc = take().loc;
    Token name = expectIdent("a hyper-parameter name");
    expectPunct("=", "after the hyper-parameter name");
    HyperParam h{name.text, parseExpr(), loc};
    prog_.hyperParams.push_back(std::move(h));
  }

  TypeExpr parseType() {
    TypeExpr t;
    t.loc = peek().loc;
    t.dtype = expectIdent("an element type (f32, i32 or bool)").text;
    expectPunct("[", "to open the shape");
    while (!isPunct("]")) {
      if (!t.dims.empty()) expectPunct(",", "between dims");
      t.dims.push_back(parseExpr());
    }
    take();
    return t;
  }

  Binding parseBinding(const char *what) {
    Token name = expectIdent(what);
    Binding b{name.text, std::nullopt, nullptr, name.loc};
    if (isPunct(":")) {
      take();
      b.type = parseType();
    }
    return b;
  }

  ModuleDecl parseModule() {
    ModuleDecl m;
    Token kw = take();
    m.isModel = kw.text == "model";
    m.loc = kw.loc;
    m.name = expectIdent(m.isModel ? "a model name" : "a module name").text;
    if (!m.isModel) {
      expectPunct("(", "after the module name (a module without arguments is written 'module Name()')");
      while (!isPunct(")")) {
        if (!m.params.empty()) expectPunct(",", "between module arguments");
        m.params.push_back(parseBinding("a module argument name"));
      }
      take();
    }
    expectPunct("{", m.isModel ? "to open the model" : "to open the module");
    while (!isPunct("}")) {
      if (peek().kind == TokKind::End) fail(fmt::format("expected '}}' to close {} '{}'", kw.text, m.name));
      if (isKeyword("fn")) {
        m.functions.push_back(parseFunction(m.isModel));
        continue;
      }
      Token name = expectIdent("a layer declaration such as 'fc1 = Linear(128, 256)' or 'fn'");
      expectPunct("=", "after the layer name");
      SourceLoc initLoc = peek().loc;
      ExprPtr init = parseExpr();
      if (init->kind != Expr::Kind::Call)
        throw Error(fmt::format("layer '{}' must be created by a call such as Linear(128, 256)", name.text), initLoc);
      m.members.push_back({name.text, std::move(init), name.loc});
    }
    take();
    return m;
  }

  /// `train { lr = 0.01  epochs = 30  select_by = loss }`: kiln train's
  /// defaults for this model, one `name = value` per entry; the values are
  /// checked by kiln train as its command line would be.
  void parseRecipe() {
    SourceLoc blockLoc = take().loc;
    if (!prog_.recipe.empty()) throw Error("a model file has one 'train { ... }' block", blockLoc);
    take(); // {
    auto dashed = [](std::string s) {
      std::replace(s.begin(), s.end(), '_', '-');
      return s;
    };
    bool any = false;
    while (!isPunct("}")) {
      if (peek().kind == TokKind::End) fail("expected '}' to close the 'train' block");
      Token key = expectIdent("a kiln train option such as 'lr' or 'select_by'");
      expectPunct("=", "after the option name");
      Token value = take();
      std::string text;
      if (value.kind == TokKind::Int || value.kind == TokKind::Float) text = value.text;
      else if (value.kind == TokKind::Ident || value.kind == TokKind::Keyword) text = dashed(value.text);
      else throw Error(fmt::format("the value of '{}' must be a number or a name, found {}", key.text, describe(value)),
                       value.loc);
      for (const RecipeEntry &e : prog_.recipe)
        if (e.option == "--" + dashed(key.text))
          throw Error(fmt::format("'{}' is set twice in the 'train' block", key.text), key.loc);
      prog_.recipe.push_back({"--" + dashed(key.text), text, key.loc});
      any = true;
    }
    take();
    if (!any) throw Error("the 'train' block is empty", blockLoc);
  }

  /// `modelFn`: a function of the model, whose inputs the data pipeline
  /// fills, so that an input may be derived from another (`= ngrams(...)`).
  Function parseFunction(bool modelFn = false) {
    Function f;
    f.loc = take().loc;
    f.name = expectIdent("a function name").text;
    expectPunct("(", "after the function name");
    while (!isPunct(")")) {
      if (!f.params.empty()) expectPunct(",", "between parameters");
      f.params.push_back(parseBinding("a parameter name"));
      if (isPunct("=")) { // an input the data pipeline derives (checked in lowering)
        if (!modelFn)
          fail("only the inputs of a model's fn can be derived from data ('= ngrams(...)'); the arguments of "
               "this function are passed by its caller");
        take();
        f.params.back().derivedFrom = parseExpr();
      }
    }
    take();
    if (isPunct("->")) {
      take();
      if (isPunct("(")) {
        take();
        while (!isPunct(")")) {
          if (!f.outputs.empty()) expectPunct(",", "between outputs");
          f.outputs.push_back(parseBinding("an output name"));
        }
        take();
      } else {
        f.outputs.push_back(parseBinding("an output name"));
      }
    }
    expectPunct("{", "to open the function body");
    while (!isPunct("}")) {
      if (peek().kind == TokKind::End) fail(fmt::format("expected '}}' to close fn '{}'", f.name));
      f.body.push_back(parseStmt());
    }
    take();
    return f;
  }

  /// Whether the next tokens are an annotation before a statement rather
  /// than the matmul operator. Statements need no separator, so
  ///     let scores = q @ k
  ///     @explain let weights = softmax(scores)
  /// must read as two, while a product may go on on the next line:
  ///     let s = q
  ///       @ k
  /// An annotation is `@NAME` written as one word, first on its line, with
  /// its statement (`let`, `NAME =` or another annotation) on the same line.
  bool startsAnnotation() const {
    if (!isPunct("@") || peek(1).kind != TokKind::Ident) return false;
    const SourceLoc &at = peek().loc, &name = peek(1).loc;
    bool firstOnLine = pos_ == 0 || toks_[pos_ - 1].loc.line < at.line;
    if (!firstOnLine || name.line != at.line || name.col != at.col + 1) return false;
    const Token &after = peek(2);
    if (after.loc.line != at.line) return false;
    return (after.kind == TokKind::Keyword && after.text == "let") || isPunct("@", 2) ||
           (after.kind == TokKind::Ident && isPunct("=", 3));
  }

  Stmt parseStmt() {
    Stmt s;
    // `@explain let weights = ...`: annotations before the statement (what
    // they mean, and where they are allowed, is lowering's to say).
    while (isPunct("@")) {
      SourceLoc at = take().loc;
      s.annotations.push_back({expectIdent("an annotation name after '@' (e.g. @explain)").text, at});
    }
    s.loc = peek().loc;
    if (isKeyword("let")) {
      take();
      s.kind = Stmt::Kind::Let;
      s.name = expectIdent("a name after 'let'").text;
      expectPunct("=", "after the name");
      s.values.push_back(parseExpr());
    } else if (isKeyword("return")) {
      take();
      s.kind = Stmt::Kind::Return;
      s.values.push_back(parseExpr());
      while (isPunct(",")) {
        take();
        s.values.push_back(parseExpr());
      }
    } else if (peek().kind == TokKind::Ident && isPunct("=", 1)) {
      s.kind = Stmt::Kind::Assign;
      s.name = take().text;
      take();
      s.values.push_back(parseExpr());
    } else {
      fail("expected a statement ('let x = ...', 'x = ...' or 'return ...')");
    }
    if (isPunct(";")) take();
    return s;
  }

  ExprPtr parseExpr() {
    if (++depth_ > maxNesting) throw Error("expression is nested too deeply", peek().loc);
    ExprPtr e = parseCompare();
    --depth_;
    return e;
  }

  ExprPtr binary(std::string op, ExprPtr lhs, ExprPtr rhs, SourceLoc loc) {
    auto e = std::make_unique<Expr>();
    e->kind = Expr::Kind::Binary;
    e->name = std::move(op);
    e->lhs = std::move(lhs);
    e->rhs = std::move(rhs);
    e->loc = std::move(loc);
    return e;
  }

  template <typename Next> ExprPtr parseLevel(std::initializer_list<const char *> ops, Next next) {
    ExprPtr lhs = (this->*next)();
    // A chain `a + a + ...` nests to the left; bound it like parentheses.
    for (int length = 0;; ++length) {
      if (length > 5 * maxNesting) throw Error("expression is too long", peek().loc);
      const char *found = nullptr;
      for (const char *op : ops)
        if (isPunct(op)) found = op;
      if (!found || startsAnnotation()) return lhs;
      SourceLoc loc = take().loc;
      ExprPtr rhs = (this->*next)();
      lhs = binary(found, std::move(lhs), std::move(rhs), loc);
    }
  }

  ExprPtr parseCompare() { return parseLevel({"==", "!=", "<", "<=", ">", ">="}, &Parser::parseSum); }
  ExprPtr parseSum() { return parseLevel({"+", "-"}, &Parser::parseProduct); }
  ExprPtr parseProduct() { return parseLevel({"*", "/", "@"}, &Parser::parseUnary); }

  ExprPtr parseUnary() {
    if (!isPunct("-")) return parsePrimary();
    if (++depth_ > maxNesting) throw Error("expression is nested too deeply", peek().loc);
    auto e = std::make_unique<Expr>();
    e->kind = Expr::Kind::Unary;
    e->loc = take().loc;
    e->name = "-";
    e->lhs = parseUnary();
    --depth_;
    return e;
  }

  ExprPtr parsePrimary() {
    auto e = std::make_unique<Expr>();
    e->loc = peek().loc;
    const Token &t = peek();
    if (t.kind == TokKind::Int || t.kind == TokKind::Float) {
      e->kind = Expr::Kind::Number;
      e->number = t.number;
      e->isInt = t.kind == TokKind::Int;
      take();
      return e;
    }
    if (isKeyword("true") || isKeyword("false")) {
      e->kind = Expr::Kind::Bool;
      e->boolValue = t.text == "true";
      take();
      return e;
    }
    if (isPunct("(")) {
      take();
      ExprPtr inner = parseExpr();
      expectPunct(")", "to close the parenthesis");
      return inner;
    }
    if (t.kind != TokKind::Ident) fail("expected an expression");
    e->name = take().text;
    if (!isPunct("(")) {
      e->kind = Expr::Kind::Name;
      return e;
    }
    take();
    e->kind = Expr::Kind::Call;
    while (!isPunct(")")) {
      if (!e->args.empty()) expectPunct(",", "between arguments");
      Arg a;
      a.loc = peek().loc;
      if (peek().kind == TokKind::Ident && isPunct("=", 1)) {
        a.name = take().text;
        take();
      }
      a.value = parseExpr();
      e->args.push_back(std::move(a));
    }
    take();
    return e;
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  Program prog_;
};

} // namespace

Program parseProgram(const std::string &text, const std::string &file) {
  Parser p(text, file);
  return p.run();
}

} // namespace kiln::frontend
