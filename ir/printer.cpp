//===- ir/printer.cpp - the textual form of the IR ------------------------===//
//
// Prints graphs in the form described in printer.h. Floats print in their
// shortest round-tripping decimal form, always with a '.' or exponent so the
// parser can tell them from integers.
//
//===----------------------------------------------------------------------===//
#include "ir/printer.h"

#include <fmt/format.h>

namespace kiln::ir {

namespace {
std::string quote(const std::string &s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

std::string printLocs(const std::vector<SourceLoc> &locs) {
  if (locs.empty()) return "";
  std::string out = " loc(";
  for (size_t i = 0; i < locs.size(); ++i) {
    if (i) out += ", ";
    out += fmt::format("{}:{}:{}", quote(locs[i].file), locs[i].line, locs[i].col);
  }
  return out + ")";
}
} // namespace

std::string printAttr(const Attr &a) {
  if (auto *b = std::get_if<bool>(&a)) return *b ? "true" : "false";
  if (auto *i = std::get_if<int64_t>(&a)) return std::to_string(*i);
  if (auto *d = std::get_if<double>(&a)) {
    std::string s = fmt::format("{}", *d);
    if (s.find_first_of(".eni") == std::string::npos) s += ".0";
    return s;
  }
  if (auto *s = std::get_if<std::string>(&a)) return quote(*s);
  if (auto *d = std::get_if<Dim>(&a)) return d->str();
  const Shape &dims = std::get<Shape>(a);
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + dims[i].str();
  return out + "]";
}

std::string printAttrs(const Attrs &attrs) {
  if (attrs.empty()) return "";
  std::string out = " {";
  bool first = true;
  for (const auto &[name, value] : attrs) {
    out += (first ? "" : ", ") + name + " = " + printAttr(value);
    first = false;
  }
  return out + "}";
}

std::vector<std::string> valueNames(const Graph &g) {
  // Unnamed values are numbered in the order the text shows them (inputs,
  // parameters, then node results in node order), so that a rewritten
  // graph, whose new nodes have the highest ids, still reads %0, %1, ...
  std::vector<std::string> names(g.numValues());
  int next = 0;
  auto name = [&](ValueId v) {
    const ValueInfo &info = g.value(v);
    names[v] = "%" + (info.name.empty() ? std::to_string(next++) : info.name);
  };
  for (ValueId v : g.inputs()) name(v);
  for (ValueId v : g.params()) name(v);
  for (const Node &n : g.nodes())
    for (ValueId r : n.results()) name(r);
  for (size_t v = 0; v < g.numValues(); ++v) // values no list holds (a graph under construction)
    if (names[v].empty()) name(static_cast<ValueId>(v));
  return names;
}

std::string printGraph(const Graph &g) {
  std::vector<std::string> names = valueNames(g);
  std::string out = "graph @" + g.name() + "(";
  for (size_t i = 0; i < g.inputs().size(); ++i) {
    ValueId v = g.inputs()[i];
    out += (i ? ", " : "") + names[v] + ": " + g.type(v).str() + printAttrs(g.value(v).attrs);
  }
  out += ") {\n";
  for (ValueId v : g.params()) out += "  param " + names[v] + ": " + g.type(v).str() + printAttrs(g.value(v).attrs) + "\n";
  for (const Node &n : g.nodes()) {
    std::string results, types;
    for (ValueId r : n.results()) {
      results += (results.empty() ? "" : ", ") + names[r];
      types += (types.empty() ? "" : ", ") + g.type(r).str();
    }
    out += "  " + results + " = " + opName(n.op) + "(";
    for (size_t i = 0; i < n.operands.size(); ++i) out += (i ? ", " : "") + names[n.operands[i]];
    out += ")" + printAttrs(n.attrs) + " : " + types + printLocs(n.locs) + "\n";
  }
  for (ValueId v : g.explained()) out += "  explain " + names[v] + "\n";
  for (const Output &o : g.outputs()) out += "  output " + o.name + " = " + names[o.value] + "\n";
  return out + "}\n";
}

std::string printModule(const Module &m) {
  std::string out;
  for (size_t i = 0; i < m.graphs().size(); ++i) {
    if (i) out += "\n";
    out += printGraph(m.graphs()[i]);
  }
  return out;
}

} // namespace kiln::ir
