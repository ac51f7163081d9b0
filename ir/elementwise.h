//===- ir/elementwise.h - the body of the fused elementwise op --*- C++ -*-===//
//
// The `elementwise` op (ir/ops.def) computes one expression of elementwise
// ops per element, in one loop: its `body` attribute is that expression in
// the IR's own op names over the operands $0, $1, ..., e.g.
//     add(add($0, $1), tanh_grad($2, $3))
// Any op the op table marks elementwise (OpInfo::elementwise: the
// arithmetic, unary and unary-gradient ops) may appear. parseBody turns the
// text into a program of steps in evaluation order, which the
// decomposition, the shape rule and the backends' kernels all share;
// formatBody writes it back.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/ops.h"

#include <string>
#include <vector>

namespace kiln::ir {

struct ElementwiseProgram {
  /// An argument of a step: operand `index` of the fused op, or the result
  /// of an earlier step.
  struct Ref {
    bool operand;
    int index;
  };
  struct Step {
    OpKind op;
    std::vector<Ref> args;
  };
  std::vector<Step> steps; ///< the last one is the result
};

/// Parses a body over `operands` operands; a kiln::Error names what is
/// wrong (the column in the body, an unknown or non-elementwise op, a wrong
/// number of arguments, an operand index out of range, an unused operand).
ElementwiseProgram parseBody(const std::string &body, size_t operands);

std::string formatBody(const ElementwiseProgram &program);

} // namespace kiln::ir
