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
#include <vector>

namespace kiln::backends::llvm_backend {

std::unique_ptr<runtime::Executable> compile(const ir::Graph &g, const runtime::CompileOptions &options);

/// What `kiln compile --emit=llvm|asm|obj` shows of a plan.
enum class EmitKind { LlvmIr, Assembly, Object };

/// The code of g's plan at these bindings, after O3: LLVM IR text, the
/// host's assembly (with `annotate`, each DSL source line followed by the
/// instructions generated for it), or an ELF object file's bytes.
std::string emitCode(const ir::Graph &g, const ir::SymbolBindings &bindings, EmitKind kind, bool annotate = false);

/// A plan compiled for an exported library (kiln export): position-
/// independent code for the host CPU whose one global function, `entry`,
/// runs the whole plan as `void entry(void *const *values, void *unused)`,
/// and the layout of the values it runs on.
struct ExportedPlan {
  std::string object; ///< an ELF relocatable object
  std::vector<std::vector<int64_t>> extents; ///< by ValueId
  std::vector<int64_t> offsets;  ///< by ValueId: its place in the arena, -1 outside it
  std::vector<int64_t> roots;    ///< by ValueId: the value whose buffer it is (itself when its own)
  std::vector<bool> bindable;    ///< by ValueId: an output that may be computed into the caller's buffer
  int64_t arenaBytes = 0;
  int threads = 1;               ///< the threads the plan was made for
  std::string cpu, features;     ///< what the code needs of the CPU
};

/// g's plan at these bindings as an exported library runs it; kiln::Error
/// naming the node and its DSL line for a node whose step is not code of
/// the plan's own or one of kiln's kernels (a convolution or a reference
/// step, which the library does not carry).
ExportedPlan exportPlan(const ir::Graph &g, const ir::SymbolBindings &bindings, const std::string &entry);

} // namespace kiln::backends::llvm_backend
