//===- runtime/init.h - parameter initialisation ----------------*- C++ -*-===//
//
// Creates a tensor for every parameter of a graph that the caller did not
// provide, following the init attributes the layer put on the parameter
// (PyTorch's rules: N(0,1) for nn.Embedding, U(-1/sqrt(in), 1/sqrt(in)) for
// nn.Linear), drawn from a seeded generator so that a seed reproduces the same
// weights on every machine. Provided tensors are checked against the
// parameter's type, and every mismatch is reported in one error.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"
#include "runtime/tensor.h"

#include <cstdint>
#include <map>
#include <string>

namespace kiln::runtime {

/// Returns one tensor per parameter of g: from `given` when present (checked
/// for dtype and shape), otherwise initialised from `seed`. Tensors in
/// `given` that the graph does not use are reported as an error when
/// `strict` is set.
std::map<std::string, Tensor> materializeParams(const ir::Graph &g, const std::map<std::string, Tensor> &given,
                                                uint64_t seed, bool strict = false);

} // namespace kiln::runtime
