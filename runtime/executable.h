//===- runtime/executable.h - a compiled graph, ready to run ----*- C++ -*-===//
//
// What a backend hands back for a graph: something that runs it on named
// inputs and parameters and returns the named outputs. The training loop,
// evaluation and prediction only see this interface, so every backend
// (reference today; oneDNN and LLVM later) serves them all.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"
#include "runtime/tensor.h"

#include <map>
#include <memory>
#include <string>

namespace kiln::runtime {

using TensorMap = std::map<std::string, Tensor>;

class Executable {
public:
  virtual ~Executable() = default;
  /// The graph this executable computes.
  virtual const ir::Graph &graph() const = 0;
  /// Runs the graph; inputs and params are matched by name (kiln::Error for a
  /// missing or mistyped one). Returns outputs by output name.
  virtual TensorMap run(const TensorMap &inputs, const TensorMap &params) = 0;
};

struct CompileOptions {
  int threads = 0; ///< 0 = all cores
};

} // namespace kiln::runtime
