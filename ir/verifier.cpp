//===- ir/verifier.cpp - structural and type checks of a graph ------------===//
//
// One linear walk over the nodes, tracking which values are defined.
//
//===----------------------------------------------------------------------===//
#include "ir/verifier.h"

#include <cctype>
#include <fmt/format.h>
#include <set>

namespace kiln::ir {

namespace {
bool wellFormedName(const std::string &n) {
  if (n.empty() || !(std::isalpha((unsigned char)n[0]) || n[0] == '_')) return false;
  for (char c : n)
    if (!(std::isalnum((unsigned char)c) || c == '_' || c == '.')) return false;
  return true;
}
} // namespace

void verify(const Graph &g) {
  auto where = [&](const Node &n) { return n.locs.empty() ? SourceLoc{} : n.locs.front(); };
  std::vector<bool> defined(g.numValues(), false);
  std::set<std::string> names;
  auto claimName = [&](const std::string &name, const SourceLoc &loc) {
    if (name.empty()) return;
    if (!wellFormedName(name)) throw Error(fmt::format("@{}: malformed value name '{}'", g.name(), name), loc);
    if (!names.insert(name).second) throw Error(fmt::format("@{}: value name %{} is used twice", g.name(), name), loc);
  };
  for (ValueId v : g.inputs()) {
    if (g.value(v).kind != ValueKind::Input) throw Error(fmt::format("@{}: input list holds a non-input", g.name()));
    claimName(g.value(v).name, {});
    // Inputs define the symbols, so their dims are plain: `T-2` says how a
    // value relates to an input's T, and only ops produce such values.
    for (const Dim &d : g.type(v).shape)
      if (d.isSymbolic() && d.value != 0)
        throw Error(fmt::format("@{}: input %{} has the offset dim {}; input dims are constants or plain symbols",
                                g.name(), g.value(v).name, d.str()));
    if (auto tooLarge = typeTooLarge(fmt::format("@{}: input %{}", g.name(), g.value(v).name), g.type(v)))
      throw Error(*tooLarge);
    defined[v] = true;
  }
  for (ValueId v : g.params()) {
    const ValueInfo &p = g.value(v);
    if (p.kind != ValueKind::Param) throw Error(fmt::format("@{}: param list holds a non-param", g.name()));
    if (p.name.empty()) throw Error(fmt::format("@{}: a parameter has no name", g.name()));
    claimName(p.name, {});
    for (const Dim &d : p.type.shape)
      if (d.isSymbolic()) throw Error(fmt::format("@{}: parameter %{} has a symbolic dim", g.name(), p.name));
    if (auto tooLarge = typeTooLarge(fmt::format("@{}: parameter %{}", g.name(), p.name), p.type)) throw Error(*tooLarge);
    defined[v] = true;
  }
  std::set<std::string> inputSymbols;
  for (const std::string &s : g.inputSymbols()) inputSymbols.insert(s);
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const Node &n = g.nodes()[i];
    std::vector<ValueId> results = n.results();
    for (size_t r = 0; r < results.size(); ++r) {
      ValueId v = results[r];
      if (v < 0 || static_cast<size_t>(v) >= g.numValues() || g.value(v).kind != ValueKind::Node ||
          g.value(v).producer != (NodeId)i || g.value(v).resultIndex != static_cast<int32_t>(r) || defined[v])
        throw Error(fmt::format("@{}: node {} ({}) has a dangling result", g.name(), i, opName(n.op)), where(n));
    }
    std::vector<TensorType> types;
    for (ValueId v : n.operands) {
      if (v < 0 || static_cast<size_t>(v) >= g.numValues() || !defined[v])
        throw Error(fmt::format("@{}: {} uses a value before it is defined", g.name(), opName(n.op)), where(n));
      types.push_back(g.type(v));
    }
    std::vector<TensorType> inferred;
    try {
      inferred = inferTypes(n.op, types, n.attrs);
    } catch (const Error &e) {
      throw Error(fmt::format("@{}: {}", g.name(), e.message()), where(n));
    }
    if (inferred.size() != results.size())
      throw Error(fmt::format("@{}: {} has {} results but its shape rule gives {}", g.name(), opName(n.op),
                              results.size(), inferred.size()),
                  where(n));
    for (size_t r = 0; r < results.size(); ++r) {
      if (!(inferred[r] == g.type(results[r])))
        throw Error(fmt::format("@{}: {} is typed {} but its shape rule gives {}", g.name(), opName(n.op),
                                g.type(results[r]).str(), inferred[r].str()),
                    where(n));
      claimName(g.value(results[r]).name, where(n));
      // Symbols are bound from the inputs; one that no input names could never
      // be given a value at run time.
      for (const Dim &d : inferred[r].shape)
        if (d.isSymbolic() && !inputSymbols.count(d.symbol))
          throw Error(fmt::format("@{}: {} produces {} but no input defines the symbol {}", g.name(), opName(n.op),
                                  inferred[r].str(), d.symbol),
                      where(n));
      defined[results[r]] = true;
    }
  }
  std::set<std::string> outs;
  for (const Output &o : g.outputs()) {
    if (o.value < 0 || static_cast<size_t>(o.value) >= g.numValues() || !defined[o.value])
      throw Error(fmt::format("@{}: output '{}' names an undefined value", g.name(), o.name));
    if (!outs.insert(o.name).second) throw Error(fmt::format("@{}: output '{}' is defined twice", g.name(), o.name));
  }
  for (ValueId v : g.explained()) {
    if (v < 0 || static_cast<size_t>(v) >= g.numValues() || !defined[v])
      throw Error(fmt::format("@{}: 'explain' names an undefined value", g.name()));
    if (g.type(v).dtype != DType::F32)
      throw Error(fmt::format("@{}: 'explain' marks %{} of type {}; only f32 weights can be explained", g.name(),
                              g.value(v).name, g.type(v).str()));
  }
}

void verify(const Module &m) {
  std::set<std::string> names;
  for (const Graph &g : m.graphs()) {
    if (!names.insert(g.name()).second) throw Error("graph @" + g.name() + " is defined twice");
    verify(g);
  }
}

} // namespace kiln::ir
