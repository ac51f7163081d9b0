//===- frontend/ast.h - the syntax tree of the kiln DSL ---------*- C++ -*-===//
//
// The parser produces a Program; frontend/lower.cpp turns it into IR. Every
// node carries the source location of its first token. The tree is plain data:
// the parser only parses, and lowering is the one place that gives it meaning.
//
// A program is a list of hyper-parameters (`param vocab = 10000`), modules
// (`module Attention(dim) { ... }`), one `model` (a module without arguments
// whose functions become graphs) and free functions (`fn name(x) { ... }`).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/diagnostic.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln::frontend {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

/// A call argument, positional (`name` empty) or keyword (`dim=1`).
struct Arg {
  std::string name;
  ExprPtr value;
  SourceLoc loc;
};

struct Expr {
  enum class Kind { Number, Bool, Name, Call, Binary, Unary };
  Kind kind;
  SourceLoc loc;
  double number = 0;     ///< Number
  bool isInt = false;    ///< Number written without '.' or exponent
  bool boolValue = false;///< Bool
  std::string name;      ///< Name, Call (callee), Binary/Unary (operator text)
  std::vector<Arg> args; ///< Call
  ExprPtr lhs, rhs;      ///< Binary (both), Unary (lhs)
};

/// `f32[B, T, embed]`: dims are names (symbols or hyper-parameters) or ints.
struct TypeExpr {
  std::string dtype;
  std::vector<ExprPtr> dims;
  SourceLoc loc;
};

/// A function parameter or declared output: `tokens: i32[B,T]` or `x`.
struct Binding {
  std::string name;
  std::optional<TypeExpr> type;
  /// A model input the data pipeline computes from another input:
  /// `pairs: i32[B, T] = ngrams(tokens, n=2, buckets=100000)`.
  ExprPtr derivedFrom;
  SourceLoc loc;
};

/// `@explain` before a statement: a fact about the value it binds, for the
/// compiler's tools rather than its arithmetic.
struct Annotation {
  std::string name; ///< `explain`
  SourceLoc loc;
};

struct Stmt {
  enum class Kind { Let, Assign, Return };
  Kind kind;
  SourceLoc loc;
  std::string name;            ///< Let / Assign target
  std::vector<ExprPtr> values; ///< one for Let/Assign, one or more for Return
  std::vector<Annotation> annotations;
};

struct Function {
  std::string name;
  std::vector<Binding> params;
  std::vector<Binding> outputs; ///< `-> logits` or `-> (a: f32[B], b)`
  std::vector<Stmt> body;
  SourceLoc loc;
};

/// `fc1 = Linear(embed, hidden)` inside a module.
struct Member {
  std::string name;
  ExprPtr init; ///< always a Call
  SourceLoc loc;
};

struct ModuleDecl {
  bool isModel = false;
  std::string name;
  std::vector<Binding> params;
  std::vector<Member> members;
  std::vector<Function> functions;
  SourceLoc loc;
};

struct HyperParam {
  std::string name;
  ExprPtr value;
  SourceLoc loc;
};

/// One line of the model's recommended training recipe, `train { lr = 0.01 }`:
/// an option of `kiln train` (without `--`, `_` for `-`) and its value as
/// the command line would take it (a number, or a name with `_` for `-`).
struct RecipeEntry {
  std::string option; ///< `--select-by` for select_by
  std::string value;  ///< `macro-f1` for macro_f1, `0.01` for 0.01
  SourceLoc loc;
};

struct Program {
  std::string file;
  std::vector<HyperParam> hyperParams;
  /// The `train { ... }` block: kiln train's defaults for this model.
  std::vector<RecipeEntry> recipe;
  std::vector<ModuleDecl> modules;
  std::vector<Function> functions;
};

/// An indented dump of the tree, for `kiln compile --emit=ast`.
std::string printAst(const Program &p);

} // namespace kiln::frontend
