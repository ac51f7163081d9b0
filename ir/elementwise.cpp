//===- ir/elementwise.cpp - parsing and printing elementwise bodies -------===//
//
// A recursive-descent parser over the grammar
//     expr := '$' digits | name '(' expr (',' expr)* ')'
// (spaces allowed between tokens) that emits the steps in post-order, so
// that every step's arguments come before it.
//
//===----------------------------------------------------------------------===//
#include "ir/elementwise.h"

#include "ir/diagnostic.h"

#include <cctype>
#include <fmt/format.h>

namespace kiln::ir {

namespace {

class BodyParser {
public:
  BodyParser(const std::string &text, size_t operands) : text_(text), operands_(operands), used_(operands, false) {}

  ElementwiseProgram parse() {
    ElementwiseProgram::Ref r = expr();
    skipSpace();
    if (pos_ != text_.size()) fail("expected the end of the body");
    if (r.operand) fail("the body must apply at least one op");
    for (size_t i = 0; i < operands_; ++i)
      if (!used_[i]) throw Error(fmt::format("elementwise body \"{}\": operand ${} is never used", text_, i));
    return std::move(program_);
  }

private:
  [[noreturn]] void fail(const std::string &what) const {
    throw Error(fmt::format("elementwise body \"{}\", column {}: {}", text_, pos_ + 1, what));
  }
  void skipSpace() {
    while (pos_ < text_.size() && text_[pos_] == ' ') ++pos_;
  }
  bool take(char c) {
    skipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  ElementwiseProgram::Ref expr() {
    skipSpace();
    // The parser recurses once per level: a bound keeps any input from
    // exhausting the stack (the fusion pass writes bodies far shallower).
    if (++depth_ > kMaxDepth) fail(fmt::format("the body nests deeper than {} levels", kMaxDepth));
    struct Leave {
      int &depth;
      ~Leave() { --depth; }
    } leave{depth_};
    if (take('$')) {
      size_t dollar = pos_ - 1, start = pos_;
      while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) ++pos_;
      if (start == pos_ || pos_ - start > 4) fail("expected an operand number after '$'");
      size_t index = std::stoul(text_.substr(start, pos_ - start));
      if (index >= operands_) {
        pos_ = dollar; // the error points at the operand
        fail(fmt::format("operand ${} does not exist (the op has {})", index, operands_));
      }
      used_[index] = true;
      return {true, static_cast<int>(index)};
    }
    size_t start = pos_;
    while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_')) ++pos_;
    if (start == pos_) fail("expected an op name or $N");
    std::string name = text_.substr(start, pos_ - start);
    std::optional<OpKind> op = opByName(name);
    if (!op || !opInfo(*op).elementwise) {
      pos_ = start; // the error points at the name
      fail(op ? "'" + name + "' is not an elementwise op" : "unknown op '" + name + "'");
    }
    if (!take('(')) fail("expected '(' after " + name);
    ElementwiseProgram::Step step{*op, {}};
    do step.args.push_back(expr());
    while (take(','));
    if (!take(')')) fail("expected ',' or ')'");
    const OpInfo &info = opInfo(*op);
    if (static_cast<int>(step.args.size()) < info.minOperands || static_cast<int>(step.args.size()) > info.maxOperands)
      fail(fmt::format("{} takes {} arguments, got {}", name, info.minOperands, step.args.size()));
    program_.steps.push_back(std::move(step));
    return {false, static_cast<int>(program_.steps.size() - 1)};
  }

  const std::string &text_;
  size_t operands_;
  std::vector<bool> used_;
  size_t pos_ = 0;
  int depth_ = 0;
  static constexpr int kMaxDepth = 64;
  ElementwiseProgram program_;
};

std::string formatRef(const ElementwiseProgram &p, ElementwiseProgram::Ref r) {
  if (r.operand) return fmt::format("${}", r.index);
  const ElementwiseProgram::Step &s = p.steps[static_cast<size_t>(r.index)];
  std::string out = std::string(opName(s.op)) + "(";
  for (size_t i = 0; i < s.args.size(); ++i) out += (i ? ", " : "") + formatRef(p, s.args[i]);
  return out + ")";
}

} // namespace

ElementwiseProgram parseBody(const std::string &body, size_t operands) { return BodyParser(body, operands).parse(); }

std::string formatBody(const ElementwiseProgram &program) {
  if (program.steps.empty()) return "";
  return formatRef(program, {false, static_cast<int>(program.steps.size() - 1)});
}

} // namespace kiln::ir
