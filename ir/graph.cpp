//===- ir/graph.cpp - SSA computation graphs and modules ------------------===//
//
// Construction and lookup for Graph and Module; see graph.h.
//
//===----------------------------------------------------------------------===//
#include "ir/graph.h"

#include <algorithm>
#include <fmt/format.h>
#include <utility>

namespace kiln::ir {

ValueId Graph::addInput(const std::string &name, TensorType type) {
  ValueId id = static_cast<ValueId>(values_.size());
  values_.push_back({std::move(type), ValueKind::Input, name, -1, {}});
  inputs_.push_back(id);
  return id;
}

ValueId Graph::addParam(const std::string &name, TensorType type, Attrs attrs) {
  ValueId id = static_cast<ValueId>(values_.size());
  values_.push_back({std::move(type), ValueKind::Param, name, -1, std::move(attrs)});
  params_.push_back(id);
  return id;
}

ValueId Graph::addNode(OpKind op, std::vector<ValueId> operands, Attrs attrs, TensorType type,
                       std::vector<SourceLoc> locs, std::string resultName) {
  return addMultiNode(op, std::move(operands), std::move(attrs), {std::move(type)}, std::move(locs),
                      {std::move(resultName)})
      .front();
}

std::vector<ValueId> Graph::addMultiNode(OpKind op, std::vector<ValueId> operands, Attrs attrs,
                                         std::vector<TensorType> types, std::vector<SourceLoc> locs,
                                         std::vector<std::string> resultNames) {
  if (types.empty()) throw Error(fmt::format("@{}: a {} node needs at least one result", name_, opName(op)));
  resultNames.resize(types.size());
  NodeId nid = insertionPoint();
  std::vector<ValueId> ids;
  for (size_t r = 0; r < types.size(); ++r) {
    ids.push_back(static_cast<ValueId>(values_.size()));
    values_.push_back({std::move(types[r]), ValueKind::Node, std::move(resultNames[r]), nid, {}, static_cast<int32_t>(r)});
  }
  Node node{op, std::move(operands), std::move(attrs), ids.front(), std::move(locs), {}};
  node.moreResults.assign(ids.begin() + 1, ids.end());
  nodes_.insert(nodes_.begin() + nid, std::move(node));
  if (insertAt_ >= 0) {
    // The nodes after the new one moved down: their results' producers too.
    ++insertAt_;
    for (size_t i = static_cast<size_t>(nid) + 1; i < nodes_.size(); ++i)
      for (ValueId r : nodes_[i].results()) values_[r].producer = static_cast<NodeId>(i);
  }
  return ids;
}

void Graph::setInsertionPoint(NodeId before) {
  if (before < 0 || static_cast<size_t>(before) > nodes_.size())
    throw Error(fmt::format("insertion point {} is outside the {} nodes of @{}", before, nodes_.size(), name_));
  insertAt_ = static_cast<size_t>(before) == nodes_.size() ? -1 : before;
}

void Graph::replaceAllUses(ValueId from, ValueId to) {
  if (from == to) return;
  for (Node &n : nodes_)
    for (ValueId &v : n.operands)
      if (v == from) v = to;
  replaceOutputUses(from, to);
}

void Graph::replaceOutputUses(ValueId from, ValueId to) {
  if (from == to) return;
  for (Output &o : outputs_)
    if (o.value == from) o.value = to;
  for (ValueId &v : explained_)
    if (v == from) v = to;
  // Two marks on one value now (CSE merged them) are one.
  for (size_t i = explained_.size(); i-- > 0;)
    if (std::find(explained_.begin(), explained_.begin() + static_cast<std::ptrdiff_t>(i), explained_[i]) !=
        explained_.begin() + static_cast<std::ptrdiff_t>(i))
      explained_.erase(explained_.begin() + static_cast<std::ptrdiff_t>(i));
  ValueInfo &old = values_.at(from), &fresh = values_.at(to);
  if (fresh.name.empty() && old.kind == ValueKind::Node) fresh.name = std::exchange(old.name, {});
}

size_t Graph::eraseNodes(const std::vector<bool> &dead) {
  size_t removed = 0;
  std::vector<ValueId> remap(values_.size(), -1);
  std::vector<ValueInfo> values;
  values.reserve(values_.size());
  // Inputs and parameters first, then node results in node order: the
  // printed IR numbers unnamed values the same way before and after.
  for (size_t v = 0; v < values_.size(); ++v)
    if (values_[v].kind != ValueKind::Node) {
      remap[v] = static_cast<ValueId>(values.size());
      values.push_back(std::move(values_[v]));
    }
  std::vector<Node> nodes;
  nodes.reserve(nodes_.size());
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (i < dead.size() && dead[i]) {
      ++removed;
      continue;
    }
    Node &n = nodes_[i];
    auto keep = [&](ValueId &r) {
      ValueId id = static_cast<ValueId>(values.size());
      remap[r] = id;
      values.push_back(std::move(values_[r]));
      values.back().producer = static_cast<NodeId>(nodes.size());
      r = id;
    };
    keep(n.result);
    for (ValueId &r : n.moreResults) keep(r);
    nodes.push_back(std::move(n));
  }
  auto mapped = [&](ValueId v) {
    if (remap[v] < 0) throw Error(fmt::format("@{}: a removed value is still read", name_));
    return remap[v];
  };
  for (Node &n : nodes)
    for (ValueId &v : n.operands) v = mapped(v);
  for (Output &o : outputs_) o.value = mapped(o.value);
  std::vector<ValueId> explained;
  for (ValueId v : explained_)
    if (remap[v] >= 0) explained.push_back(remap[v]);
  explained_ = std::move(explained);
  for (ValueId &v : inputs_) v = remap[v];
  for (ValueId &v : params_) v = remap[v];
  values_ = std::move(values);
  nodes_ = std::move(nodes);
  insertAt_ = -1;
  return removed;
}

std::vector<std::vector<NodeId>> Graph::users() const {
  std::vector<std::vector<NodeId>> u(values_.size());
  for (size_t i = 0; i < nodes_.size(); ++i)
    for (ValueId v : nodes_[i].operands) u[v].push_back(static_cast<NodeId>(i));
  return u;
}

bool Graph::isOutput(ValueId v) const {
  for (const Output &o : outputs_)
    if (o.value == v) return true;
  return false;
}

void Graph::addOutput(const std::string &name, ValueId v) { outputs_.push_back({name, v}); }

void Graph::markExplained(ValueId v) {
  values_.at(v); // range check
  if (std::find(explained_.begin(), explained_.end(), v) == explained_.end()) explained_.push_back(v);
}

ValueId Graph::findInput(const std::string &name) const {
  for (ValueId v : inputs_)
    if (values_[v].name == name) return v;
  return -1;
}

ValueId Graph::findParam(const std::string &name) const {
  for (ValueId v : params_)
    if (values_[v].name == name) return v;
  return -1;
}

std::vector<std::string> Graph::inputSymbols() const {
  std::vector<std::string> syms;
  for (ValueId v : inputs_)
    for (const Dim &d : values_[v].type.shape)
      if (d.isSymbolic() && std::find(syms.begin(), syms.end(), d.symbol) == syms.end())
        syms.push_back(d.symbol);
  return syms;
}

SymbolBindings Graph::minimumExtents() const {
  SymbolBindings least;
  for (const ValueInfo &v : values_)
    for (const Dim &d : v.type.shape)
      if (d.isSymbolic() && d.value < 0) {
        auto [it, fresh] = least.emplace(d.symbol, -d.value);
        if (!fresh) it->second = std::max(it->second, -d.value);
      }
  return least;
}

SymbolBindings Graph::bindSymbols(const std::vector<std::vector<int64_t>> &inputExtents) const {
  if (inputExtents.size() != inputs_.size())
    throw Error(fmt::format("graph @{} takes {} inputs, got {}", name_, inputs_.size(), inputExtents.size()));
  SymbolBindings b;
  for (size_t i = 0; i < inputs_.size(); ++i) {
    const ValueInfo &in = values_[inputs_[i]];
    const auto &ext = inputExtents[i];
    auto mismatch = [&] {
      std::string got = "[";
      for (size_t k = 0; k < ext.size(); ++k) got += (k ? "," : "") + std::to_string(ext[k]);
      throw Error(fmt::format("input '{}' expects {} but was given shape {}]", in.name, in.type.str(), got));
    };
    if (ext.size() != in.type.rank()) mismatch();
    for (size_t k = 0; k < ext.size(); ++k) {
      const Dim &d = in.type.shape[k];
      if (!d.isSymbolic()) {
        if (d.value != ext[k]) mismatch();
        continue;
      }
      auto [it, fresh] = b.emplace(d.symbol, ext[k]);
      if (!fresh && it->second != ext[k])
        throw Error(fmt::format("input '{}': symbol {} is {} here but {} in an earlier input", in.name,
                                d.symbol, ext[k], it->second));
    }
  }
  // An offset dim must not come out negative: name the first op whose result
  // would, so that `T = 1` fed to a convolution of width 3 says which one.
  for (const Node &n : nodes_)
    for (ValueId r : n.results())
      for (const Dim &d : values_[r].type.shape) {
        auto it = d.isSymbolic() ? b.find(d.symbol) : b.end();
        if (it == b.end() || it->second + d.value >= 0) continue;
        throw Error(fmt::format("{} = {} is too small for {} of @{}, whose result is {}: it needs {} >= {}", d.symbol,
                                it->second, opName(n.op), name_, values_[r].type.str(), d.symbol, -d.value),
                    n.locs.empty() ? SourceLoc{} : n.locs.front());
      }
  return b;
}

Graph &Module::addGraph(const std::string &name) {
  graphs_.emplace_back(name);
  return graphs_.back();
}

const Graph *Module::find(const std::string &name) const {
  for (const Graph &g : graphs_)
    if (g.name() == name) return &g;
  return nullptr;
}

Graph *Module::find(const std::string &name) {
  for (Graph &g : graphs_)
    if (g.name() == name) return &g;
  return nullptr;
}

} // namespace kiln::ir
