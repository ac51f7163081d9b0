//===- backends/onednn/onednn_backend.h - oneDNN CPU backend ----*- C++ -*-===//
//
// Compiles a graph into a plan of oneDNN primitives (matmul with fused bias,
// eltwise forward/backward, binary with broadcasting, softmax/log-softmax
// forward/backward, reductions, reorders for transposes) over one arena laid
// out by passes/memory_plan.h. Ops oneDNN has no primitive for (embedding
// gather and scatter-add, masked softmax and reductions, cross-entropy,
// comparisons, select, casts, ...) run the reference kernel on views of the
// arena. A plan is built once per set of symbol bindings (B, T) and cached:
// primitives and memory descriptors are created once per shape and reused
// every step.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/executable.h"

#include <memory>

namespace kiln::backends::onednn {

std::unique_ptr<runtime::Executable> compile(const ir::Graph &g, const runtime::CompileOptions &options);

} // namespace kiln::backends::onednn
