//===- passes/cse.cpp - common subexpression elimination ------------------===//
//
// Algorithm: one forward walk in topological order. Each node is looked up
// by (op, operands, attributes) among the nodes already kept; when an equal
// node exists, every reader of this one reads the earlier one instead (the
// earlier one dominates: a straight-line graph has no branches). Operands
// are compared after replacement, so chains of duplicates collapse in the
// one walk. Every op is a pure function of its operands and attributes, so
// equal keys mean equal values; results of different types cannot share a
// key (the type follows from the key). The duplicates are then dead and are
// removed.
//
//===----------------------------------------------------------------------===//
#include "passes/pipeline.h"

#include "ir/rewrite.h"

#include <map>
#include <utility>

namespace kiln::passes {

bool eliminateCommonSubexpressions(ir::Graph &g, const PassContext &) {
  using Key = std::pair<ir::OpKind, std::vector<ir::ValueId>>;
  std::map<Key, std::vector<ir::ValueId>> seen; // candidates with this op and operands
  bool changed = false;
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const ir::Node &n = g.nodes()[i];
    auto &candidates = seen[{n.op, n.operands}];
    ir::ValueId twin = -1;
    for (ir::ValueId c : candidates)
      // Compared with defaults filled in: {axis = -1} and no axis agree.
      if (ir::withDefaults(n.op, g.nodes()[g.value(c).producer].attrs) == ir::withDefaults(n.op, n.attrs)) twin = c;
    if (twin < 0) {
      candidates.push_back(n.result);
      continue;
    }
    // Keep the earlier value; it takes the duplicate's DSL name when it has
    // none of its own (replaceAllUses).
    const ir::Node &first = g.nodes()[g.value(twin).producer];
    for (size_t r = 0; r < n.numResults(); ++r) g.replaceAllUses(n.resultAt(r), first.resultAt(r));
    changed = true;
  }
  if (changed) ir::rewrite::eraseDeadNodes(g);
  return changed;
}

} // namespace kiln::passes
