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

/// What `kiln compile --emit=llvm|asm|obj` shows of a plan.
enum class EmitKind { LlvmIr, Assembly, Object };

/// The code of g's plan at these bindings, after O3: LLVM IR text, the
/// host's assembly (with `annotate`, each DSL source line followed by the
/// instructions generated for it), or an ELF object file's bytes.
std::string emitCode(const ir::Graph &g, const ir::SymbolBindings &bindings, EmitKind kind, bool annotate = false);

} // namespace kiln::backends::llvm_backend
