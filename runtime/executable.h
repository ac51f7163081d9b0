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

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace kiln::runtime {

using TensorMap = std::map<std::string, Tensor>;

/// Time spent in one node of the graph, summed over the runs profiled.
struct NodeTiming {
  ir::NodeId node = -1;
  std::string label; ///< `op` or the backend's kernel name, e.g. "matmul+bias (onednn)"
  double seconds = 0;
  int64_t calls = 0;
};

class Executable {
public:
  virtual ~Executable() = default;
  /// The graph this executable computes.
  virtual const ir::Graph &graph() const = 0;
  /// Runs the graph; inputs and params are matched by name (kiln::Error for a
  /// missing or mistyped one). Returns outputs by output name.
  virtual TensorMap run(const TensorMap &inputs, const TensorMap &params) = 0;
  /// Runs the graph as run() does, into `outputs`: a tensor already there
  /// under an output's name, with that output's dtype and shape, receives
  /// the output in place (a backend may compute straight into it: no copy,
  /// no allocation); other outputs are added or replace what is there. A
  /// tensor given this way must not share storage with an input or a
  /// parameter, with one exception: an adam_rows result may be given its
  /// own operand's storage (the table or moment it updates), which its
  /// kernel then updates in place, touching only the rows the batch used.
  /// The training loop passes last step's parameters, which the new ones
  /// replaced, so that an update is written where the old values were
  /// instead of into fresh memory (and, with --optimizer lazy-adam, the
  /// tables themselves: see runtime/trainer.cpp). A backend runs the graph
  /// exactly once per call. By default: run(), then moved.
  virtual void runInto(const TensorMap &inputs, const TensorMap &params, TensorMap &outputs) {
    for (auto &[name, t] : run(inputs, params)) outputs[name] = std::move(t);
  }

  /// Watches runs as they go, on the thread that runs the graph (set by
  /// observeRuns): a data-parallel step sums each gradient while the rest
  /// of the backward pass still runs.
  class RunObserver {
  public:
    virtual ~RunObserver() = default;
    /// Output `name` is final: the node that computes it has run. `value`
    /// views it where the run computes it, valid until the run returns.
    virtual void outputFinal(const std::string &name, const Tensor &value) = 0;
    /// A step of the run is done (for work of the observer's own to make
    /// progress, such as MPI's non-blocking sums).
    virtual void stepDone() {}
  };
  /// Reports the runs that follow to `observer` (null: to nobody).
  /// Returns false when this backend cannot tell anything before the run
  /// returns (it runs a plan as one piece, as the llvm backend's compiled
  /// function does); every output is final when run returns in any case.
  virtual bool observeRuns(RunObserver *observer) {
    (void)observer;
    return false;
  }

  /// Per-node timing of subsequent runs (`kiln bench --profile`); a backend
  /// that cannot profile ignores it and returns an empty profile.
  virtual void setProfiling(bool on) { (void)on; }
  virtual std::vector<NodeTiming> profile() const { return {}; }
  /// Bytes of intermediate storage the last run used (the arena, or the
  /// reference interpreter's peak of live values); 0 when unknown.
  virtual int64_t workspaceBytes() const { return 0; }
  /// Seconds spent compiling what the last run ran (a backend that builds
  /// a plan per shape: that plan's build, primitives and generated code
  /// included); 0 when unknown or nothing is compiled.
  virtual double compileSeconds() const { return 0; }
  /// The number of worker threads the last run used (at most, where small
  /// loops stay on one); 0 when unknown. `kiln bench` prints it, so that
  /// --threads can be seen to take effect.
  virtual int threads() const { return 0; }
};

struct CompileOptions {
  int threads = 0; ///< worker threads; 0 = all cores (OpenMP's default for the oneDNN backend)
  /// Reuse compiled code from the compile cache and add to it (`--no-cache`
  /// turns it off; backends that compile code: llvm).
  bool cache = true;
  /// When set, a backend that compiles code reports each plan it compiles
  /// here, one line with its times (`--time-passes`).
  std::function<void(const std::string &)> report;
};

} // namespace kiln::runtime
