//===- passes/fuse_elementwise.cpp - chains of elementwise ops, one loop --===//
//
// Algorithm: for each candidate root, from the last node up, grow the
// largest cluster of elementwise ops (OpInfo::elementwise) that can become
// one `elementwise` node, then replace it, and start over until no root
// grows a cluster of two or more ops.
//  - A node is fusible when it is an elementwise op on f32 whose operands
//    all have its result type or are f32[] scalars (no broadcasting beyond
//    scalars: the fused kernel walks one index space).
//  - Walking the nodes before the root downwards (the nodes are in
//    topological order, so every reader of a node is decided before it), a
//    fusible node joins when its result has the root's type, is no graph
//    output, and its one reader has joined: the cluster is a tree whose
//    intermediates die with it and are never written to memory. (A value
//    with two readers stays a node and becomes an operand.)
//  - The cluster's other operands become the fused op's operands ($0, $1,
//    ... in order of first use, each once); its ops, in graph order, become
//    the body (ir/elementwise.h), and the fused node carries every absorbed
//    node's DSL location.
// Scalar (f32[]) chains, such as the optimizer's bias corrections, are left
// alone: there is no memory traffic to save. A cluster is capped at
// kMaxOps ops and kMaxOperands operands (the op table's limit).
// tests/lit/passes/fuse_elementwise.ir has the cases and the look-alikes.
//
//===----------------------------------------------------------------------===//
#include "passes/pipeline.h"

#include "ir/elementwise.h"
#include "ir/rewrite.h"
#include "ir/verifier.h"

#include <algorithm>
#include <map>

namespace kiln::passes {

namespace {

using ir::Graph;
using ir::NodeId;
using ir::ValueId;

constexpr size_t kMaxOps = 32;

size_t maxOperands() { return static_cast<size_t>(ir::opInfo(ir::OpKind::Elementwise).maxOperands); }

bool fusible(const Graph &g, const ir::Node &n) {
  if (!ir::opInfo(n.op).elementwise || !n.moreResults.empty()) return false;
  const ir::TensorType &r = g.type(n.result);
  if (r.dtype != ir::DType::F32) return false;
  for (ValueId o : n.operands) {
    const ir::TensorType &t = g.type(o);
    if (!(t == r) && !(t.dtype == ir::DType::F32 && t.rank() == 0)) return false;
  }
  return true;
}

/// The cluster rooted at `root`, in graph order (root last); empty when
/// there is none worth fusing.
std::vector<NodeId> clusterAt(const Graph &g, const std::vector<std::vector<NodeId>> &users, NodeId root) {
  const ir::Node &r = g.nodes()[root];
  if (!fusible(g, r) || g.type(r.result).rank() == 0) return {};
  std::vector<bool> in(g.nodes().size(), false);
  in[root] = true;
  std::vector<NodeId> cluster{root};
  for (NodeId j = root; j-- > 0 && cluster.size() < kMaxOps;) {
    const ir::Node &n = g.nodes()[j];
    if (!fusible(g, n) || !(g.type(n.result) == g.type(r.result)) || g.isOutput(n.result)) continue;
    // One reader, in the cluster: the body is a tree, each intermediate
    // written once in its text (a value read twice would be computed twice,
    // and a chain of such values would double the body at every step).
    const std::vector<NodeId> &readers = users[n.result];
    if (readers.size() != 1 || !in[readers[0]]) continue;
    in[j] = true;
    cluster.push_back(j);
  }
  if (cluster.size() < 2) return {};
  std::reverse(cluster.begin(), cluster.end());
  return cluster;
}

/// Replaces the cluster with one elementwise node; false (and the graph
/// untouched) when it would need more operands than the op takes.
bool replaceCluster(Graph &g, const std::vector<NodeId> &cluster) {
  std::map<ValueId, ir::ElementwiseProgram::Ref> refs;
  std::vector<ValueId> operands;
  ir::ElementwiseProgram program;
  std::vector<SourceLoc> locs;
  for (NodeId id : cluster) {
    const ir::Node &n = g.nodes()[id];
    ir::ElementwiseProgram::Step step{n.op, {}};
    for (ValueId o : n.operands) {
      auto it = refs.find(o);
      if (it == refs.end()) {
        it = refs.emplace(o, ir::ElementwiseProgram::Ref{true, static_cast<int>(operands.size())}).first;
        operands.push_back(o);
      }
      step.args.push_back(it->second);
    }
    program.steps.push_back(std::move(step));
    refs[n.result] = {false, static_cast<int>(program.steps.size() - 1)};
    for (const SourceLoc &l : n.locs)
      if (std::find(locs.begin(), locs.end(), l) == locs.end()) locs.push_back(l);
  }
  if (operands.size() > maxOperands()) return false;
  NodeId root = cluster.back();
  ValueId rootResult = g.nodes()[root].result;
  g.setInsertionPoint(root);
  ir::Builder b(g);
  ValueId fused = b.create(ir::OpKind::Elementwise, operands, {{"body", ir::formatBody(program)}});
  g.setInsertionPoint(static_cast<NodeId>(g.nodes().size()));
  g.nodes()[g.value(fused).producer].locs = locs;
  g.replaceAllUses(rootResult, fused);
  ir::rewrite::eraseDeadNodes(g);
  return true;
}

} // namespace

bool fuseElementwise(ir::Graph &g, const PassContext &context) {
  bool changed = false;
  // Each replacement renumbers the nodes, so the walk starts over; it ends
  // because every replacement removes at least one node. (A root whose
  // cluster needs too many operands is passed over, on every walk.)
  for (bool again = true; again;) {
    again = false;
    std::vector<std::vector<NodeId>> users = g.users();
    for (NodeId root = static_cast<NodeId>(g.nodes().size()); root-- > 0;) {
      std::vector<NodeId> cluster = clusterAt(g, users, root);
      if (cluster.empty() || !replaceCluster(g, cluster)) continue;
      if (context.verifyEach) ir::verify(g);
      changed = again = true;
      break;
    }
  }
  return changed;
}

} // namespace kiln::passes
