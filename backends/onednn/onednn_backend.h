//===- backends/onednn/onednn_backend.h - oneDNN CPU backend ----*- C++ -*-===//
//
// Compiles a graph into a plan of oneDNN primitives (matmul with fused bias,
// eltwise forward/backward, binary with broadcasting, softmax/log-softmax
// forward/backward, reductions, reorders for transposes, convolutions) and
// kiln's own kernels (embedding gather and scatter-add, masked softmax and
// reductions, the fused attention ops, gru and lstm, Adam, ...) over one
// arena laid out by passes/memory_plan.h; the reference kernel runs what
// neither has. A plan is built once per set of symbol bindings (B, T) and
// cached: primitives and memory descriptors are created once per shape and
// reused every step.
//
// OnednnLowering is the part that makes oneDNN primitives; the LLVM backend
// uses it for the GEMMs and convolutions it does not generate.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "backends/common/planned_executable.h"
#include "runtime/executable.h"

#include <dnnl.hpp>
#include <memory>

namespace kiln::backends::onednn {

std::unique_ptr<runtime::Executable> compile(const ir::Graph &g, const runtime::CompileOptions &options);

/// Lowers nodes of one graph to oneDNN primitives, as plan steps that run on
/// its own stream.
class OnednnLowering {
public:
  explicit OnednnLowering(const ir::Graph &g);
  ~OnednnLowering();
  /// Adds node i's steps to p; false when oneDNN has no primitive for it.
  bool lower(Plan &p, size_t i);
  /// Whether the primitive for node may write its result over `operand`.
  bool inPlace(const Plan &p, const ir::Node &node, size_t operand) const;
  /// Waits for the primitives submitted so far.
  void wait();

private:
  /// A memory object for value v whose address is looked up at run time,
  /// or (value -1) one that owns its buffer: a primitive's weights in the
  /// blocked layout it wants, reordered from the graph's.
  struct Bound {
    dnnl::memory mem;
    ir::ValueId value;
  };
  void addPrimitive(Plan &p, size_t node, std::string label, dnnl::primitive prim,
                    std::vector<std::pair<int, Bound>> args);
  Bound bind(const dnnl::memory::desc &md, ir::ValueId v);
  bool lowerPrimitive(Plan &p, size_t i);
  bool lowerCustom(Plan &p, size_t i);
  bool lowerConv(Plan &p, size_t i);

  const ir::Graph &graph_;
  dnnl::engine engine_;
  dnnl::stream stream_;
};

} // namespace kiln::backends::onednn
