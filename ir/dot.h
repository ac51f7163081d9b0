//===- ir/dot.h - Graphviz rendering of graphs ------------------*- C++ -*-===//
//
// `kiln compile --emit=dot` writes this; `dot -Tsvg` renders it. Inputs are
// green, parameters grey, outputs blue; every edge is labelled with its type.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"

#include <string>

namespace kiln::ir {

std::string printDot(const Module &m);

} // namespace kiln::ir
