//===- passes/autodiff.h - reverse-mode automatic differentiation -*- C++ -*-===//
//
// differentiate() turns a graph with a scalar loss output into one that also
// returns the gradient of the loss with respect to every f32 parameter, as
// outputs named `grad.<parameter name>`. Gradient rules emit ordinary ops
// (the backward ops of ir/ops.def among them), so the result prints,
// verifies and runs like any other graph.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"

#include <string>

namespace kiln::passes {

/// A copy of `forward` (same inputs, params, nodes and outputs) extended with
/// the backward computation and `grad.<param>` outputs. `loss` names a scalar
/// f32 output. A differentiable op on the path to the loss without a gradient
/// rule is a kiln::Error at that op's location.
ir::Graph differentiate(const ir::Graph &forward, const std::string &loss, const std::string &name = "grad");

} // namespace kiln::passes
