//===- backends/reference/interpreter.h - the oracle interpreter -*- C++ -*-===//
//
// Executes any verified graph with plain loops over row-major buffers. It is
// kiln's definition of what each op means, the oracle every other backend is
// compared against, so clarity wins over speed; loops are still ordered for
// the cache and the large ops (matmul, embedding, elementwise) split their
// outer loop over threads.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"
#include "runtime/tensor.h"

#include <map>
#include <string>
#include <vector>

namespace kiln::reference {

struct RunOptions {
  /// Keep every intermediate value (for `kiln run --dump-all`).
  bool keepAll = false;
  /// Worker threads for the parallel loops; 0 = hardware concurrency.
  int threads = 0;
};

struct RunResult {
  /// Outputs by output name.
  std::map<std::string, runtime::Tensor> outputs;
  /// With keepAll: every node result, indexed by ValueId (empty otherwise;
  /// inputs and params are left empty).
  std::vector<runtime::Tensor> values;
  ir::SymbolBindings bindings;
};

/// Runs g. `inputs` are matched to the graph's inputs by name and `params` to
/// its params by name; missing or mistyped ones are a kiln::Error.
RunResult run(const ir::Graph &g, const std::map<std::string, runtime::Tensor> &inputs,
              const std::map<std::string, runtime::Tensor> &params, const RunOptions &options = {});

/// Runs one node's reference kernel on tensors at concrete extents (views into
/// another backend's memory are fine). `result` must be zero-filled where
/// needsZeroedResult(op). Lets other backends fall back to the oracle
/// for ops they have no faster kernel for.
void executeNode(const ir::Node &n, const std::vector<const runtime::Tensor *> &operands, runtime::Tensor &result,
                 int threads);
/// The same for a node with several results (one tensor per result, in order).
void executeNode(const ir::Node &n, const std::vector<const runtime::Tensor *> &operands,
                 const std::vector<runtime::Tensor *> &results, int threads);

/// Whether executeNode needs a zero-filled result for op (its kernel
/// accumulates); the others overwrite every element.
bool needsZeroedResult(ir::OpKind op);

/// True when the interpreter has a kernel for op (the op-table test checks
/// that every op has one).
bool hasKernel(ir::OpKind op);

} // namespace kiln::reference
