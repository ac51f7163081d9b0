//===- ir/dot.cpp - Graphviz rendering of graphs --------------------------===//
//
// One cluster per graph; node ids are prefixed with the graph name so several
// graphs can share one file.
//
//===----------------------------------------------------------------------===//
#include "ir/dot.h"

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
      out += fmt::format("    {} [shape=ellipse, label=\"{}\"];\n", id(n.result),
                         escape(results + " = " + label + "\n" + types));
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
