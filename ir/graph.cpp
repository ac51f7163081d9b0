//===- ir/graph.cpp - SSA computation graphs and modules ------------------===//
//
// Construction and lookup for Graph and Module; see graph.h.
//
//===----------------------------------------------------------------------===//
#include "ir/graph.h"

#include <algorithm>
#include <fmt/format.h>

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
  ValueId id = static_cast<ValueId>(values_.size());
  NodeId nid = static_cast<NodeId>(nodes_.size());
  values_.push_back({std::move(type), ValueKind::Node, std::move(resultName), nid, {}});
  nodes_.push_back({op, std::move(operands), std::move(attrs), id, std::move(locs)});
  return id;
}

void Graph::addOutput(const std::string &name, ValueId v) { outputs_.push_back({name, v}); }

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
