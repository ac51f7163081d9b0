//===- tests/unit/elementwise_test.cpp - bodies of the elementwise op -----===//
//
// parseBody and formatBody (ir/elementwise.h): a body prints back as it was
// written (modulo spaces), every malformed body is a kiln::Error naming the
// column and the problem, and no input, however deep, exhausts the stack.
//
//===----------------------------------------------------------------------===//
#include "ir/diagnostic.h"
#include "ir/elementwise.h"

#include <doctest/doctest.h>
#include <string>

using namespace kiln;
using namespace kiln::ir;

namespace {
std::string errorOf(const std::string &body, size_t operands) {
  try {
    parseBody(body, operands);
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}
} // namespace

TEST_CASE("elementwise bodies round-trip and list their steps in evaluation order") {
  ElementwiseProgram p = parseBody("add( mul($0,$1) , tanh_grad($2, neg($0)))", 3);
  REQUIRE(p.steps.size() == 4);
  CHECK(p.steps[0].op == OpKind::Mul);
  CHECK(p.steps[1].op == OpKind::Neg);
  CHECK(p.steps[2].op == OpKind::TanhGrad);
  CHECK(p.steps[3].op == OpKind::Add);
  CHECK(p.steps[3].args[0].operand == false);
  CHECK(p.steps[3].args[0].index == 0);
  CHECK(formatBody(p) == "add(mul($0, $1), tanh_grad($2, neg($0)))");
}

TEST_CASE("malformed elementwise bodies are errors that say where and what") {
  CHECK(errorOf("add($0, $2)", 2).find("column 9: operand $2 does not exist (the op has 2)") != std::string::npos);
  CHECK(errorOf("add($0, foo($1))", 2).find("column 9: unknown op 'foo'") != std::string::npos);
  CHECK(errorOf("softmax($0)", 1).find("column 1: 'softmax' is not an elementwise op") != std::string::npos);
  CHECK(errorOf("add($0)", 1).find("add takes 2 arguments, got 1") != std::string::npos);
  CHECK(errorOf("neg($0) x", 1).find("expected the end of the body") != std::string::npos);
  CHECK(errorOf("$0", 1).find("at least one op") != std::string::npos);
  CHECK(errorOf("neg($0)", 2).find("operand $1 is never used") != std::string::npos);
  CHECK(errorOf("neg($)", 1).find("expected an operand number") != std::string::npos);
  CHECK(errorOf("neg($0", 1).find("expected ',' or ')'") != std::string::npos);
  CHECK(errorOf("", 0).find("expected an op name or $N") != std::string::npos);
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += "neg(";
  CHECK(errorOf(deep + "$0", 1).find("nests deeper than 64 levels") != std::string::npos);
}
