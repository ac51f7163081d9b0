//===- passes/explain.cpp - the graph that shows what a model attends to -===//
//
// Algorithm: copy the forward graph, add one output per @explain mark
// (named after the marked value), drop the marks (they are now outputs).
// See passes/explain.h.
//
//===----------------------------------------------------------------------===//
#include "passes/explain.h"

#include "ir/diagnostic.h"

#include <fmt/format.h>

namespace kiln::passes {

ir::Graph buildExplainGraph(const ir::Graph &forward, const std::string &name) {
  if (forward.explained().empty())
    throw Error(fmt::format("the model marks no weights to explain: write '@explain' before the 'let' of its "
                            "attention weights (for example '@explain let weights = softmax(...)'; docs/DSL.md)"));
  ir::Graph g = forward;
  g.setName(name);
  for (size_t i = 0; i < forward.explained().size(); ++i) {
    ir::ValueId v = forward.explained()[i];
    const std::string &valueName = g.value(v).name;
    g.addOutput(kExplainPrefix + (valueName.empty() ? std::to_string(i) : valueName), v);
  }
  g.clearExplained();
  return g;
}

WeightsLayout weightsLayout(const ir::TensorType &type) {
  const ir::Shape &d = type.shape;
  size_t r = d.size();
  if (r >= 3 && d[r - 1] == d[r - 2] && !(d[r - 1] == ir::Dim::constant(1))) return WeightsLayout::QueriesByKeys;
  return WeightsLayout::PerToken;
}

} // namespace kiln::passes
