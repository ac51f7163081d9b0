//===- ir/verifier.h - structural and type checks of a graph ----*- C++ -*-===//
//
// verify() checks what every pass must preserve: operands are defined before
// use, every node's result type is what its shape rule infers, names are
// unique and well formed, parameters have constant dims, outputs exist. It can
// run after every pass (`--verify-each`). Problems come back as kiln::Error at
// the location of the offending node.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"

namespace kiln::ir {

void verify(const Graph &g);
void verify(const Module &m);

} // namespace kiln::ir
