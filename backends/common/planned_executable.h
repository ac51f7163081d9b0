//===- backends/common/planned_executable.h - what every CPU backend shares -*- C++ -*-===//
//
// The machinery of a backend that runs a graph as a list of steps over one
// planned arena, which the oneDNN and LLVM backends share:
//  - a Plan per set of symbol bindings (B, T): the concrete extents of every
//    value, the memory plan (passes/memory_plan.h), one step per node, and
//    the thread count it runs on;
//  - a bounded cache of plans (least recently used dropped first) that all
//    run in one arena, grown to the largest plan's size;
//  - binding inputs, parameters and outputs (an output may be computed
//    straight into the caller's tensor), checking ids and labels before any
//    step runs, per-step profiling, and the reference kernel as the
//    fallback for a node no lowering takes.
// A backend derives from PlannedExecutable and says how to lower one node
// (lowerNode) and, if it wants, how to run a whole plan (runPlan: the LLVM
// backend calls its one compiled entry function instead of the steps).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "passes/memory_plan.h"
#include "runtime/executable.h"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln::backends {

/// Arena memory, page aligned (so aligned for AVX-512). Its own mapping, not
/// the heap's: the kiln driver keeps large heap blocks from being returned
/// to the system (fresh pages fault in slowly on these VMs), so an arena
/// freed when a longer batch needs a larger one would stay in the process
/// for good.
struct AlignedBuffer {
  void *data = nullptr;
  size_t mapped = 0;
  explicit AlignedBuffer(size_t bytes);
  ~AlignedBuffer();
  AlignedBuffer(const AlignedBuffer &) = delete;
  AlignedBuffer &operator=(const AlignedBuffer &) = delete;
};

/// Everything built for one set of symbol bindings.
struct Plan {
  ir::SymbolBindings bindings;
  std::vector<std::vector<int64_t>> extents; ///< by ValueId
  passes::MemoryPlan memory;
  /// The executable's shared arena this plan's addresses were computed for.
  const void *boundArena = nullptr;
  uint64_t lastUse = 0; ///< for the bounded plan cache
  std::vector<void *> ptr; ///< by ValueId: where the value lives this run
  std::vector<void *> home; ///< by ValueId: its place in the arena (null outside it)
  /// By ValueId: an output that runInto may place in the caller's tensor:
  /// a node result of its own buffer (no view or in-place result of it or
  /// under it), named by one output only.
  std::vector<bool> bindable;
  struct Step {
    ir::NodeId node;
    std::string label;
    /// The work; empty for a step a backend runs by other means (the LLVM
    /// backend's generated code, which still reports time against it).
    std::function<void()> run;
  };
  std::vector<Step> steps;
  /// Per step: the outputs (indices into the graph's outputs) that are
  /// final once it has run, for a RunObserver.
  std::vector<std::vector<size_t>> finalOutputs;
  std::vector<double> seconds; ///< per step, when profiling
  std::vector<int64_t> calls;
  /// OpenMP threads the plan's steps run on: --threads, or OpenMP's default
  /// when it is 0, except that a plan this small (batch-1 inference) runs on
  /// one thread: the cost of waking a second one exceeds the work it would
  /// take over.
  int threads = 1;
  double buildSeconds = 0; ///< wall time of building this plan
  /// A backend's own state for the plan (the LLVM backend's compiled code).
  std::shared_ptr<void> backendState;

  float *f32(ir::ValueId v) const { return static_cast<float *>(ptr[v]); }
  const std::vector<int64_t> &ext(ir::ValueId v) const { return extents[v]; }
};

/// Sets OpenMP's thread count for a scope (oneDNN reads it at primitive
/// creation and execution), restoring the previous value after.
class OmpThreads {
public:
  explicit OmpThreads(int threads);
  ~OmpThreads();
  OmpThreads(const OmpThreads &) = delete;
  OmpThreads &operator=(const OmpThreads &) = delete;

private:
  int previous_;
};

class PlannedExecutable : public runtime::Executable {
public:
  PlannedExecutable(const ir::Graph &g, const runtime::CompileOptions &o);

  const ir::Graph &graph() const override { return graph_; }
  void setProfiling(bool on) override { profiling_ = on; }
  std::vector<runtime::NodeTiming> profile() const override;
  int64_t workspaceBytes() const override;
  int threads() const override;
  double compileSeconds() const override;
  runtime::TensorMap run(const runtime::TensorMap &inputs, const runtime::TensorMap &params) override;
  bool observeRuns(RunObserver *observer) override;
  void runInto(const runtime::TensorMap &inputs, const runtime::TensorMap &params,
               runtime::TensorMap &outputs) override;

  /// At most this many plans are kept: a training run over texts of many
  /// lengths would otherwise keep one plan (and its primitives and code) per
  /// length for good.
  static constexpr size_t kMaxPlans = 16;

protected:
  /// Adds the step(s) of node i to p; false leaves the node to the
  /// reference kernel. May throw (a library refusing a shape); the steps
  /// added by the failed call are then dropped and the reference runs it.
  virtual bool lowerNode(Plan &p, size_t i) = 0;
  /// Whether node's result may be written over its operand `operand` (the
  /// memory planner then gives both one buffer).
  virtual bool inPlace(const Plan &p, const ir::Node &node, size_t operand) const;
  /// Called after every node has its steps (the LLVM backend compiles here).
  virtual void finishPlan(Plan &p) { (void)p; }
  /// Runs every step of p in order (profiling each when asked); a backend
  /// with its own entry point runs the plan there instead.
  virtual void runPlan(Plan &p);
  /// Waits for the work of the steps run so far (oneDNN's stream).
  virtual void synchronize() {}

  /// Runs step k of p, timing it when profiling, and tells the observer
  /// which outputs it finished.
  void runStep(Plan &p, size_t k);
  /// Whether this backend runs its plans step by step (runPlan's default),
  /// so that an observer can be told of outputs as they are final.
  virtual bool runsStepByStep() const { return true; }
  RunObserver *observer_ = nullptr;
  bool profiling() const { return profiling_; }
  bool isExternal(ir::ValueId v) const { return graph_.value(v).kind != ir::ValueKind::Node; }
  /// The plan for these bindings, built (lowered, finished) on first use.
  Plan &planFor(const ir::SymbolBindings &b);

  ir::Graph graph_;
  int requestedThreads_;

private:
  void execute(const runtime::TensorMap &inputs, const runtime::TensorMap &params, runtime::TensorMap &out,
               bool bindGiven);
  void checkIndices(const Plan &plan, const std::vector<const runtime::Tensor *> &given) const;
  void bindArena(Plan &p);
  void build(Plan &p, const ir::SymbolBindings &b);
  void addReferenceStep(Plan &p, size_t i);

  bool profiling_ = false;
  std::map<ir::SymbolBindings, std::unique_ptr<Plan>> plans_;
  uint64_t useClock_ = 0;
  std::unique_ptr<AlignedBuffer> arena_;
  size_t arenaBytes_ = 0;
  Plan *lastPlan_ = nullptr;
};

/// Appends a step for node `node` running `body`; the label says which
/// kernel it is ("embedding (kiln kernel)").
void addStep(Plan &p, size_t node, std::string label, std::function<void()> body);

/// The value v is an alias of (a view or in-place result), followed to the
/// value that owns the buffer.
ir::ValueId rootOf(const Plan &p, ir::ValueId v);

/// A call of one of kiln's kernel entries (backends/kernels/entries.h):
/// which, and its argument record for one node at a plan's extents.
struct KernelCall {
  const char *entry; ///< its symbol, kiln_k_NAME
  void (*fn)(void *const *values, const int64_t *args);
  std::vector<int64_t> args;
  std::string label; ///< the op's name
  /// What runs it, for the step's label: kiln's kernel or oneDNN's matmul.
  const char *library = "kiln kernel";
};

/// The kernel call for node i of g at p's extents, where one of kiln's
/// kernels implements it (see lowerToKernel); nullopt where none does.
/// Unmasked softmax, log_softmax, softmax_grad and max, which oneDNN has
/// primitives for, only with preferKernels.
std::optional<KernelCall> kernelCall(const ir::Graph &g, const Plan &p, size_t i, bool preferKernels = false);

/// Adds the step of node i of g as one of kiln's own CPU kernels
/// (backends/kernels/kernels.h) where one implements it: embedding and its
/// scatter-add, masked reductions and their gradients, masked softmax and
/// max, column sums, Adam, the fused attention ops, gru and lstm, dropout
/// and fused elementwise bodies. False when none does (or not for this
/// shape).
bool lowerToKernel(const ir::Graph &g, Plan &p, size_t i);

/// The product of e[begin, end).
int64_t product(const std::vector<int64_t> &e, size_t begin, size_t end);

/// The strides of a dense row-major tensor of extents d.
std::vector<int64_t> denseStrides(const std::vector<int64_t> &d);

/// `small` aligned to rank `rank` with leading 1s (numpy broadcasting).
std::vector<int64_t> alignRank(const std::vector<int64_t> &small, size_t rank);

} // namespace kiln::backends
