//===- frontend/ast.cpp - printing the syntax tree ------------------------===//
//
// `kiln compile --emit=ast` output: one node per line, children indented,
// each with its line:col.
//
//===----------------------------------------------------------------------===//
#include "frontend/ast.h"

#include <fmt/format.h>

namespace kiln::frontend {

namespace {

std::string at(const SourceLoc &l) { return fmt::format("<{}:{}>", l.line, l.col); }

void printExpr(const Expr &e, int depth, std::string &out, const std::string &label = "") {
  std::string pad(depth * 2, ' ');
  out += pad + label;
  switch (e.kind) {
  case Expr::Kind::Number:
    out += fmt::format("Number {} {}\n", e.isInt ? fmt::format("{}", (long long)e.number) : fmt::format("{}", e.number),
                       at(e.loc));
    return;
  case Expr::Kind::Bool: out += fmt::format("Bool {} {}\n", e.boolValue ? "true" : "false", at(e.loc)); return;
  case Expr::Kind::Name: out += fmt::format("Name {} {}\n", e.name, at(e.loc)); return;
  case Expr::Kind::Call:
    out += fmt::format("Call {} {}\n", e.name, at(e.loc));
    for (const Arg &a : e.args) printExpr(*a.value, depth + 1, out, a.name.empty() ? "" : a.name + "=");
    return;
  case Expr::Kind::Binary:
    out += fmt::format("Binary '{}' {}\n", e.name, at(e.loc));
    printExpr(*e.lhs, depth + 1, out);
    printExpr(*e.rhs, depth + 1, out);
    return;
  case Expr::Kind::Unary:
    out += fmt::format("Unary '{}' {}\n", e.name, at(e.loc));
    printExpr(*e.lhs, depth + 1, out);
    return;
  }
}

void printBinding(const Binding &b, int depth, std::string &out, const char *what) {
  out += std::string(depth * 2, ' ') + fmt::format("{} {} {}\n", what, b.name, at(b.loc));
  if (b.type) {
    out += std::string(depth * 2 + 2, ' ') + fmt::format("Type {} {}\n", b.type->dtype, at(b.type->loc));
    for (const ExprPtr &d : b.type->dims) printExpr(*d, depth + 2, out);
  }
  if (b.derivedFrom) {
    out += std::string(depth * 2 + 2, ' ') + "DerivedFrom\n";
    printExpr(*b.derivedFrom, depth + 2, out);
  }
}

void printFunction(const Function &f, int depth, std::string &out) {
  out += std::string(depth * 2, ' ') + fmt::format("Function {} {}\n", f.name, at(f.loc));
  for (const Binding &b : f.params) printBinding(b, depth + 1, out, "Param");
  for (const Binding &b : f.outputs) printBinding(b, depth + 1, out, "Output");
  for (const Stmt &s : f.body) {
    const char *kind = s.kind == Stmt::Kind::Let ? "Let" : s.kind == Stmt::Kind::Assign ? "Assign" : "Return";
    std::string annotations;
    for (const Annotation &a : s.annotations) annotations += " @" + a.name;
    out += std::string(depth * 2 + 2, ' ') + kind + (s.name.empty() ? "" : " " + s.name) + annotations + " " +
           at(s.loc) + "\n";
    for (const ExprPtr &v : s.values) printExpr(*v, depth + 2, out);
  }
}

} // namespace

std::string printAst(const Program &p) {
  std::string out = fmt::format("Program {}\n", p.file);
  for (const HyperParam &h : p.hyperParams) {
    out += fmt::format("  HyperParam {} {}\n", h.name, at(h.loc));
    printExpr(*h.value, 2, out);
  }
  for (const ModuleDecl &m : p.modules) {
    out += fmt::format("  {} {} {}\n", m.isModel ? "Model" : "Module", m.name, at(m.loc));
    for (const Binding &b : m.params) printBinding(b, 2, out, "Arg");
    for (const Member &mem : m.members) {
      out += fmt::format("    Member {} {}\n", mem.name, at(mem.loc));
      printExpr(*mem.init, 3, out);
    }
    for (const Function &f : m.functions) printFunction(f, 2, out);
  }
  for (const Function &f : p.functions) printFunction(f, 1, out);
  for (const RecipeEntry &e : p.recipe) out += fmt::format("  Recipe {} {} {}\n", e.option, e.value, at(e.loc));
  return out;
}

} // namespace kiln::frontend
