//===- ir/decompose.h - what each fused op stands for -----------*- C++ -*-===//
//
// A fused op (the last rows of ops.def) is defined by its decomposition: a
// function that builds, with an ordinary Builder, the primitive ops the
// fused op stands for, from its operands and attributes, and returns one
// value per result. The decomposition is the fused op's meaning:
//  - the reference interpreter runs a fused node by running its
//    decomposition (backends/reference), so the oracle never has a second,
//    hand-written version of the computation;
//  - autodiff differentiates a graph with fused ops by expanding them
//    first (expandFusedOps), so a fused op needs no gradient rule;
//  - every backend's fused kernel is tested against it (the parity suite).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/builder.h"

#include <vector>

namespace kiln::ir {

using Decomposition = std::vector<ValueId> (*)(Builder &b, const std::vector<ValueId> &operands, const Attrs &attrs);

/// The decomposition of op k; null for a primitive op.
Decomposition decompositionOf(OpKind k);
inline bool isFused(OpKind k) { return decompositionOf(k) != nullptr; }

/// Replaces every fused node of g by its decomposition (in place, each at
/// its position, the results keeping their names); returns how many.
size_t expandFusedOps(Graph &g);

} // namespace kiln::ir
