//===- passes/explain.h - the graph that shows what a model attends to -*- C++ -*-===//
//
// buildExplainGraph() makes the graph `kiln predict --explain` runs: the
// forward graph with one more output per value the model marked with
// `@explain` (the attention weights), named `explain.<DSL name>`. It is
// built before the pass pipeline, so the passes see the weights as an
// output: fuse-attention then asks its fused kernels for them (an extra
// result) instead of leaving the attention unfused, and the forward graph
// itself, which has no such output, keeps its kernels that never store them.
//
// weightsLayout() says how such an output holds one weight per token:
// [B, T] or [B, T, 1] (one per token), or [B, ..., T, T] (queries x keys,
// which tools/explain.cpp averages over a text's real queries and the dims
// between, such as heads). Lowering admits no other shape for @explain.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"

#include <string>
#include <vector>

namespace kiln::passes {

/// The prefix of the explain graph's extra outputs.
inline constexpr const char *kExplainPrefix = "explain.";

/// The forward graph with the marked values as outputs; kiln::Error (naming
/// what to write) when the model marks none.
ir::Graph buildExplainGraph(const ir::Graph &forward, const std::string &name = "explain");

/// How an explain output holds its weights, from its (symbolic) type.
enum class WeightsLayout { PerToken, QueriesByKeys };
WeightsLayout weightsLayout(const ir::TensorType &type);

} // namespace kiln::passes
