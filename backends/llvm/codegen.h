//===- backends/llvm/codegen.h - LLVM IR for a plan -------------*- C++ -*-===//
//
// One LLVM module per plan (a graph at bound extents), with one entry
// function for the whole graph:
//     void kiln_entry(void *const *values, void *host)
// values is the plan's array of buffer addresses by ValueId (set at each run:
// inputs and parameters are the caller's tensors); host is the plan's
// HostContext (backends/llvm/runtime.h). The entry calls, in the plan's
// order, each step: a generated step function `kiln_step_K` (also exported,
// for per-step profiling), or kiln_rt_step(host, K) for a step that is a
// oneDNN primitive or one of kiln's kernels.
//
// A node that one of kiln's kernels implements becomes a call of the
// kernel's entry with its argument record as a constant array: the entries
// are linked in from the LLVM bitcode of backends/kernels/ built into kiln,
// so O3 sees the kernel with the record's extents as constants.
//
// Generated so far: every op of the elementwise family (arithmetic with
// numpy broadcasting, unary, unary gradients, comparisons, select,
// broadcast_to, fused `elementwise` bodies), each as one loop nest over the
// result: the result viewed as [rows, cols] after merging the dims that
// broadcast alike, rows (and blocks of long rows) split over the threads
// by kiln_rt_parallel_for, the inner loop contiguous so that LLVM's
// vectoriser takes it. exp, tanh, sigmoid and erf are kiln's own
// polynomials (the same as backends/kernels/vector.h), so they vectorise
// without a vector math library.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "backends/common/planned_executable.h"

#include <memory>
#include <string>

namespace llvm {
class LLVMContext;
class Module;
} // namespace llvm

namespace kiln::backends::llvm_backend {

class PlanModule {
public:
  PlanModule(const ir::Graph &g, const Plan &p, const std::string &name);
  ~PlanModule();

  /// Emits the step function of node i as step number `step`
  /// (kiln_step_<step>); false, with nothing emitted, when the node is not
  /// one that is generated yet.
  bool emitNode(size_t i, size_t step);
  /// Emits the step function of a node that one of kiln's kernels runs: a
  /// call of its entry (backends/kernels/entries.h) with its record as a
  /// constant of the module.
  void emitKernelCall(const KernelCall &call, size_t i, size_t step);
  /// Emits kiln_entry over the plan's steps, each generated or not; links
  /// in the kernel entries the steps call (from the bitcode built into
  /// kiln) and makes every function but the entry and the steps internal.
  /// stepNodes: the node of each step (its DSL location goes into the
  /// DWARF line info of the step's code).
  void finish(const std::vector<bool> &generated, const std::vector<ir::NodeId> &stepNodes);

  static std::string stepName(size_t step);
  static constexpr const char *kEntry = "kiln_entry";

  std::unique_ptr<llvm::LLVMContext> takeContext();
  std::unique_ptr<llvm::Module> takeModule();

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace kiln::backends::llvm_backend
