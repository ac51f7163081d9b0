//===- ir/dot.cpp - Graphviz rendering of graphs --------------------------===//
//
// One cluster per graph; node ids are prefixed with the graph name so several
// graphs can share one file. A fused op is drawn as a cluster of its own,
// labelled with the primitive ops it absorbed (its decomposition), so a
// graph after the fusion passes still shows what runs inside each node.
//
//===----------------------------------------------------------------------===//
#include "ir/dot.h"

#include "ir/decompose.h"
#include "ir/printer.h"

#include <fmt/format.h>

namespace kiln::ir {

namespace {
std::string escape(const std::string &s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}
/// The primitive ops a fused node stands for, in order ("matmul, add,
/// relu"): its decomposition built over operands of the node's types.
std::string absorbed(const Graph &g, const Node &n) {
  Graph parts("parts");
  Builder b(parts);
  std::vector<ValueId> operands;
  for (size_t i = 0; i < n.operands.size(); ++i) operands.push_back(b.input("in" + std::to_string(i), g.type(n.operands[i])));
  decompositionOf(n.op)(b, operands, n.attrs);
  std::string list;
  for (const Node &p : parts.nodes())
    if (p.op != OpKind::Constant) list += (list.empty() ? "" : ", ") + std::string(opName(p.op));
  return list;
}

} // namespace

std::string printDot(const Module &m) {
  std::string out = "digraph kiln {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n"
                    "  edge [fontname=\"Helvetica\", fontsize=8];\n";
  for (size_t gi = 0; gi < m.graphs().size(); ++gi) {
    const Graph &g = m.graphs()[gi];
    std::vector<std::string> names = valueNames(g);
    // A node is drawn once, under its first result's id; edges from any of
    // its results start there.
    auto id = [&](ValueId v) {
      const ValueInfo &info = g.value(v);
      if (info.kind == ValueKind::Node) v = g.nodes()[info.producer].result;
      return fmt::format("g{}_v{}", gi, v);
    };
    out += fmt::format("  subgraph cluster_{} {{\n    label=\"@{}\";\n", gi, escape(g.name()));
    for (ValueId v : g.inputs())
      out += fmt::format("    {} [shape=box, style=filled, fillcolor=\"#c8e6c9\", label=\"{}\\n{}\"];\n", id(v),
                         escape(names[v]), escape(g.type(v).str()));
    for (ValueId v : g.params())
      out += fmt::format("    {} [shape=box, style=filled, fillcolor=\"#e0e0e0\", label=\"{}\\n{}\"];\n", id(v),
                         escape(names[v]), escape(g.type(v).str()));
    for (const Node &n : g.nodes()) {
      std::string label = std::string(opName(n.op)) + printAttrs(n.attrs);
      if (!n.locs.empty()) label += "\n" + fmt::format("{}:{}", n.locs[0].line, n.locs[0].col);
      std::string results, types;
      for (ValueId r : n.results()) {
        results += (results.empty() ? "" : ", ") + names[r];
        types += (types.empty() ? "" : ", ") + g.type(r).str();
      }
      if (isFused(n.op)) {
        // A fused op is a cluster of its own: the node, and what it absorbed.
        out += fmt::format("    subgraph cluster_g{}_n{} {{\n      label=\"fused: {}\";\n      style=filled;\n"
                           "      fillcolor=\"#fff3e0\";\n",
                           gi, n.result, escape(absorbed(g, n)));
        out += fmt::format("      {} [shape=box, style=\"rounded,filled\", fillcolor=\"#ffcc80\", label=\"{}\"];\n    }}\n",
                           id(n.result), escape(results + " = " + label + "\n" + types));
      } else {
        out += fmt::format("    {} [shape=ellipse, label=\"{}\"];\n", id(n.result),
                           escape(results + " = " + label + "\n" + types));
      }
      for (ValueId o : n.operands)
        out += fmt::format("    {} -> {} [label=\"{}\"];\n", id(o), id(n.result), escape(g.type(o).str()));
    }
    for (size_t i = 0; i < g.outputs().size(); ++i) {
      const Output &o = g.outputs()[i];
      out += fmt::format("    g{}_out{} [shape=box, style=filled, fillcolor=\"#bbdefb\", label=\"{}\"];\n", gi, i,
                         escape(o.name));
      out += fmt::format("    {} -> g{}_out{} [label=\"{}\"];\n", id(o.value), gi, i, escape(g.type(o.value).str()));
    }
    out += "  }\n";
  }
  return out + "}\n";
}

} // namespace kiln::ir
