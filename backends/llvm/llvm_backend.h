//===- backends/llvm/llvm_backend.h - kiln's kernels as LLVM-JIT code -*- C++ -*-===//
//
// The LLVM backend: the shared planned executable
// (backends/common/planned_executable.h) whose plan is one LLVM module per
// bound shape with one entry function for the whole graph
// (backends/llvm/codegen.h), optimised at O3 for the host CPU and compiled
// by ORC's LLJIT (backends/llvm/jit.h). The nodes it does not generate yet
// are steps the entry calls: kiln's kernels, then oneDNN's primitives (the
// GEMMs and convolutions), then the reference kernel.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/executable.h"

#include <memory>
#include <string>

namespace kiln::backends::llvm_backend {

std::unique_ptr<runtime::Executable> compile(const ir::Graph &g, const runtime::CompileOptions &options);

} // namespace kiln::backends::llvm_backend
