//===- ir/printer.h - the textual form of the IR ----------------*- C++ -*-===//
//
// The text form, which ir/parser.h reads back so that print(parse(t)) == t:
//
//   graph @forward(%tokens: i32[B,T]) {
//     param %fc1.weight: f32[256,128]
//     %0 = constant() {dtype = "i32", value = 0.0} : i32[] loc("m.kiln":21:27)
//     %mask = not_equal(%tokens, %0) : bool[B,T] loc("m.kiln":21:16)
//     ...
//     output logits = %7
//   }
//
// Values without a name print as %N, numbered in order of definition.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"

#include <string>

namespace kiln::ir {

std::string printGraph(const Graph &g);
std::string printModule(const Module &m);
/// `{a = 1, b = true}`; empty string for no attributes.
std::string printAttrs(const Attrs &attrs);
std::string printAttr(const Attr &a);
/// The printed names (`%x`, `%3`) of every value in g, by ValueId.
std::vector<std::string> valueNames(const Graph &g);

} // namespace kiln::ir
