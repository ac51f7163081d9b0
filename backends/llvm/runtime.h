//===- backends/llvm/runtime.h - what generated code calls ------*- C++ -*-===//
//
// The few functions the LLVM backend's generated code calls by name, all C
// ABI, resolved by the JIT (backends/llvm/jit.cpp) in every compiled plan:
//  - kiln_rt_parallel_for (backends/kernels/parallel.h) splits [0, items)
//    over the threads of the plan (OpenMP's team, the one oneDNN and kiln's
//    kernels run on) and calls a generated body for each part;
//  - kiln_rt_step runs step k of the plan that is not generated code (a
//    oneDNN primitive or one of kiln's kernels), from the generated entry.
// `host` is the HostContext of the plan being run.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "backends/kernels/parallel.h"

#include <cstdint>

namespace kiln::backends {
struct Plan;
}

namespace kiln::backends::llvm_backend {

/// What the generated entry function gets as its `host` argument.
struct HostContext {
  Plan *plan = nullptr;
};

} // namespace kiln::backends::llvm_backend

extern "C" {
/// Runs step k of the plan (one that is not generated code).
void kiln_rt_step(void *host, int64_t k);
}
