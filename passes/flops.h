//===- passes/flops.h - counting the arithmetic of a graph ------*- C++ -*-===//
//
// graphFlops() counts the floating-point operations one run of a graph does
// at concrete extents, so that `kiln bench` can report GFLOP/s that mean the
// same thing on every backend (a backend's fusions do not change the count).
//
// The counting rule, per op (elements at the bound extents; masks ignored,
// i.e. every position is counted as if unmasked):
//
//   matmul                                  2·K per result element, which is
//                                           2·M·N·K per batch element
//   add sub mul div neg relu, comparisons,
//   select cast, relu_grad, sum_grad,
//   mean_grad, max_grad                     1 per result element
//   sum mean max, sum_to, embedding_grad    1 per operand element (one add
//                                           or compare per input read)
//   exp log tanh sigmoid sqrt               4 per element (a short polynomial
//                                           or iteration in any math library;
//                                           the weight is a convention)
//   tanh_grad sigmoid_grad                  3 per element
//   softmax, log_softmax                    8 per element (max, subtract,
//                                           exp = 4, sum, divide/subtract)
//   softmax_grad                            4 per element
//   log_softmax_grad                        7 per element (exp = 4, sum, mul, sub)
//   cross_entropy                           8 per logit (log_softmax) + 1 per row
//   cross_entropy_grad                      10 per logit (softmax, subtract, scale)
//   adam_moment                             3 per element (4 with {square})
//   adam_update                             9 per element (sqrt = 4, five more)
//   constant reshape transpose broadcast_to
//   embedding                               0 (data movement only)
//
// Matmuls dominate every example model, so the weights of the cheap ops
// move the totals by a few percent at most.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"

#include <cstdint>

namespace kiln::passes {

/// FLOPs of one run of g with its symbols bound by `bindings`, by the rule
/// above. kiln::Error when a shape has a symbol that `bindings` lacks.
int64_t graphFlops(const ir::Graph &g, const ir::SymbolBindings &bindings);

/// FLOPs of one node of g, by the same rule.
int64_t nodeFlops(const ir::Graph &g, const ir::Node &n, const ir::SymbolBindings &bindings);

} // namespace kiln::passes
