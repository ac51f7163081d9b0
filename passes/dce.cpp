//===- passes/dce.cpp - dead code elimination -----------------------------===//
//
// Algorithm: one backward walk over the nodes (they are in topological
// order) marking a node live when a graph output or a live node reads its
// result; the rest are removed (ir::rewrite::eraseDeadNodes). Every op is
// pure, so "nothing reads it" is the whole test. Inputs and parameters are
// never removed, even when unread: they are the graph's signature.
//
//===----------------------------------------------------------------------===//
#include "passes/pipeline.h"

#include "ir/rewrite.h"

namespace kiln::passes {

bool eliminateDeadCode(ir::Graph &g, const PassContext &) { return ir::rewrite::eraseDeadNodes(g) > 0; }

} // namespace kiln::passes
