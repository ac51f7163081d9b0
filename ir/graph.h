//===- ir/graph.h - SSA computation graphs and modules ----------*- C++ -*-===//
//
// A Graph is a straight-line SSA program over tensors: named inputs, named
// parameters (the model's weights, named as in a PyTorch state_dict), nodes in
// topological order each producing one value, and named outputs. A Module is a
// list of named graphs (`forward`, later `train`). Values are referred to by
// index (ValueId) into Graph::values; every node records the DSL source
// locations it came from, and fused nodes keep the locations of what they
// absorbed. A graph may also mark values for explanation (`@explain` in the
// DSL: the attention weights `kiln predict --explain` shows); a mark is not
// an output, so nothing is computed or kept for it, but the explain graph
// (passes/explain.h) makes each marked value an output.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/diagnostic.h"
#include "ir/ops.h"
#include "ir/types.h"

#include <string>
#include <vector>

namespace kiln::ir {

using ValueId = int32_t;
using NodeId = int32_t;

enum class ValueKind : uint8_t { Input, Param, Node };

struct ValueInfo {
  TensorType type;
  ValueKind kind = ValueKind::Node;
  /// Inputs and params always have names; node results may (the DSL names
  /// them after the `let` that bound them) or may not (printed as %N).
  std::string name;
  NodeId producer = -1; ///< for ValueKind::Node
  /// For params: how to initialise when no weights are given, as PyTorch
  /// does for the layer that made it: {init = "normal", std = 1.0} or
  /// {init = "uniform", bound = 1/sqrt(fan_in)}.
  Attrs attrs;
  int32_t resultIndex = 0; ///< which result of its producer (multi-result ops)
};

struct Node {
  OpKind op;
  std::vector<ValueId> operands;
  Attrs attrs;
  /// The first (for most ops the only) result.
  ValueId result = -1;
  std::vector<SourceLoc> locs;
  /// Results after the first, of ops that have several (a fused attention
  /// produces its output and the row log-sum-exp its backward reads).
  std::vector<ValueId> moreResults;

  size_t numResults() const { return 1 + moreResults.size(); }
  ValueId resultAt(size_t i) const { return i == 0 ? result : moreResults.at(i - 1); }
  std::vector<ValueId> results() const {
    std::vector<ValueId> all{result};
    all.insert(all.end(), moreResults.begin(), moreResults.end());
    return all;
  }
};

struct Output {
  std::string name;
  ValueId value;
};

class Graph {
public:
  explicit Graph(std::string name = "forward") : name_(std::move(name)) {}

  const std::string &name() const { return name_; }
  void setName(std::string n) { name_ = std::move(n); }

  ValueId addInput(const std::string &name, TensorType type);
  ValueId addParam(const std::string &name, TensorType type, Attrs attrs = {});
  /// Adds a node whose result type has already been inferred, at the
  /// insertion point (the end unless setInsertionPoint moved it).
  ValueId addNode(OpKind op, std::vector<ValueId> operands, Attrs attrs, TensorType type,
                  std::vector<SourceLoc> locs, std::string resultName = {});
  /// The same for an op with several results (types.size() >= 1; names
  /// empty or one per result); returns the results in order.
  std::vector<ValueId> addMultiNode(OpKind op, std::vector<ValueId> operands, Attrs attrs, std::vector<TensorType> types,
                                    std::vector<SourceLoc> locs, std::vector<std::string> resultNames = {});

  // --- Rewriting (ir/rewrite.h builds patterns on these) ---------------------
  /// New nodes go before node `before` (and the nodes from there on move
  /// down one index per node added); nodes().size() means the end.
  void setInsertionPoint(NodeId before);
  NodeId insertionPoint() const { return insertAt_ < 0 ? static_cast<NodeId>(nodes_.size()) : insertAt_; }
  /// Every operand and output that reads `from` reads `to` instead. `to`
  /// takes over from's name when it has none, so that a fused value keeps
  /// the DSL name of the value it stands for.
  void replaceAllUses(ValueId from, ValueId to);
  /// The same for the outputs and @explain marks only, leaving the nodes
  /// that read `from`: a fusion that exposes a value it absorbs (the nodes
  /// still reading the old one die with the rewrite, and reading the new
  /// one, defined after them, would break the order until they do).
  void replaceOutputUses(ValueId from, ValueId to);
  /// Removes the nodes marked in `dead` (indexed by NodeId) and every value
  /// they produced, renumbering the remaining values and nodes: ValueIds and
  /// NodeIds held across the call are stale. The caller guarantees no survivor reads a
  /// removed value. Returns how many nodes were removed.
  size_t eraseNodes(const std::vector<bool> &dead);
  /// Per value, the nodes that read it (a node reading it twice is listed
  /// twice); outputs are not nodes: see isOutput.
  std::vector<std::vector<NodeId>> users() const;
  /// Whether some graph output is v.
  bool isOutput(ValueId v) const;
  void addOutput(const std::string &name, ValueId v);
  /// Replaces the output list (passes that drop or reorder outputs).
  void setOutputs(std::vector<Output> outputs) { outputs_ = std::move(outputs); }

  /// Marks v for explanation (see the header comment). Marks follow
  /// replaceAllUses (a fusion that exposes the value keeps its mark) and
  /// vanish with the value when its node is erased (a fusion that never
  /// materialises it: nothing reads a mark).
  void markExplained(ValueId v);
  const std::vector<ValueId> &explained() const { return explained_; }
  void clearExplained() { explained_.clear(); }

  const ValueInfo &value(ValueId v) const { return values_.at(v); }
  ValueInfo &value(ValueId v) { return values_.at(v); }
  const TensorType &type(ValueId v) const { return values_.at(v).type; }
  size_t numValues() const { return values_.size(); }

  const std::vector<ValueId> &inputs() const { return inputs_; }
  const std::vector<ValueId> &params() const { return params_; }
  const std::vector<Node> &nodes() const { return nodes_; }
  std::vector<Node> &nodes() { return nodes_; }
  const std::vector<Output> &outputs() const { return outputs_; }

  /// Finds an input or param by name; -1 if absent.
  ValueId findInput(const std::string &name) const;
  ValueId findParam(const std::string &name) const;

  /// Symbols that appear in input shapes, in order of first appearance.
  std::vector<std::string> inputSymbols() const;

  /// The smallest value of each input symbol for which no dim of the graph
  /// is negative (`T-2` needs T >= 2); symbols with no negative offset are
  /// absent. The data pipeline pads batches up to it.
  SymbolBindings minimumExtents() const;

  /// Binds the symbols of the input shapes from concrete input extents;
  /// throws kiln::Error naming the input when extents disagree, and naming
  /// the op (with its DSL location) when a symbol is below minimumExtents.
  SymbolBindings bindSymbols(const std::vector<std::vector<int64_t>> &inputExtents) const;

private:
  std::string name_;
  std::vector<ValueInfo> values_;
  std::vector<ValueId> inputs_, params_;
  std::vector<Node> nodes_;
  std::vector<Output> outputs_;
  std::vector<ValueId> explained_;
  NodeId insertAt_ = -1; ///< -1: append
};

class Module {
public:
  Graph &addGraph(const std::string &name);
  const Graph *find(const std::string &name) const;
  Graph *find(const std::string &name);
  const std::vector<Graph> &graphs() const { return graphs_; }
  std::vector<Graph> &graphs() { return graphs_; }

private:
  std::vector<Graph> graphs_;
};

} // namespace kiln::ir
