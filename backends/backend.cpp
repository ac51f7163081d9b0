//===- backends/backend.cpp - choosing and invoking a backend -------------===//
//
// The registry is a fixed table: each entry names a backend, says in a line
// what it is, and how to compile for it. The reference backend wraps the
// interpreter.
//
//===----------------------------------------------------------------------===//
#include "backends/backend.h"

#include "backends/llvm/compile_cache.h"
#include "backends/llvm/llvm_backend.h"
#include "backends/onednn/onednn_backend.h"
#include "backends/reference/interpreter.h"
#include "ir/printer.h"

#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <thread>

namespace kiln::backends {

namespace {

class ReferenceExecutable : public runtime::Executable {
public:
  ReferenceExecutable(const ir::Graph &g, const runtime::CompileOptions &o) : graph_(g) {
    // Resolved here so that threads() reports what the interpreter uses.
    options_.threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  const ir::Graph &graph() const override { return graph_; }
  runtime::TensorMap run(const runtime::TensorMap &inputs, const runtime::TensorMap &params) override {
    return reference::run(graph_, inputs, params, options_).outputs;
  }
  int threads() const override { return options_.threads; }

private:
  ir::Graph graph_;
  reference::RunOptions options_;
};

std::unique_ptr<runtime::Executable> compileReference(const ir::Graph &g, const runtime::CompileOptions &o) {
  return std::make_unique<ReferenceExecutable>(g, o);
}

/// "auto": the faster of the oneDNN and LLVM backends for this graph,
/// measured on its first run. Each builds its plan for the first inputs
/// (untimed: the LLVM backend's compile is a one-time cost, cached on disk),
/// then both run them kTrials times each, alternating, so that a drift of
/// the machine's speed hits both alike; the smaller median wins (llvm's
/// counting its compile time, spread over kRunsPerPlan runs) and the other
/// executable, with its plans and arena, is dropped. The runs before
/// the choice compute the same outputs, so the caller sees one run. An
/// LLVM compile that fails leaves the oneDNN backend (the reason is
/// reported with --time-passes). The choice is measured once per graph and
/// host and kept in the compile cache, so that runs of one recipe agree
/// (without the cache, --no-cache, each run measures afresh).
class AutoExecutable : public runtime::Executable {
public:
  AutoExecutable(const ir::Graph &g, const runtime::CompileOptions &o)
      : graph_(g), options_(o), onednn_(onednn::compile(g, o)), llvm_(llvm_backend::compile(g, o)) {}

  /// Its own copy: callers keep the reference across the choice, which
  /// drops one of the backends.
  const ir::Graph &graph() const override { return graph_; }
  runtime::TensorMap run(const runtime::TensorMap &inputs, const runtime::TensorMap &params) override {
    runtime::TensorMap out;
    runInto(inputs, params, out);
    return out;
  }
  void runInto(const runtime::TensorMap &inputs, const runtime::TensorMap &params,
               runtime::TensorMap &outputs) override {
    if (!chosen_) {
      // The trials run into tensors of their own: the caller's may be a
      // parameter updated in place (a lazy Adam step's embedding table),
      // which must see exactly one step.
      runtime::TensorMap trials;
      choose(inputs, params, trials);
    }
    chosen_->runInto(inputs, params, outputs);
  }
  void setProfiling(bool on) override {
    profiling_ = on;
    for (auto *e : {onednn_.get(), llvm_.get()})
      if (e) e->setProfiling(on);
  }
  std::vector<runtime::NodeTiming> profile() const override { return current().profile(); }
  int64_t workspaceBytes() const override { return current().workspaceBytes(); }
  double compileSeconds() const override { return current().compileSeconds(); }
  int threads() const override { return current().threads(); }

  static constexpr int kTrials = 3;
  /// The runs a plan is assumed to serve: a training run's steps spread
  /// over its (bucketed, runtime::bucketLength) lengths.
  static constexpr double kRunsPerPlan = 100;

private:
  const runtime::Executable &current() const { return chosen_ ? *chosen_ : *onednn_; }

  void choose(const runtime::TensorMap &inputs, const runtime::TensorMap &params, runtime::TensorMap &outputs) {
    // The choice is kept in the compile cache, keyed like its code by the
    // graph, the host and kiln's sources (and the threads asked for): the
    // backends round differently, so a choice that followed the timing of
    // the moment would make two runs of one recipe differ.
    std::string key = llvm_backend::cacheKey(fmt::format("auto: the backend of\n{}threads {}\n",
                                                          ir::printGraph(graph_), options_.threads));
    if (options_.cache) {
      std::optional<std::string> kept = llvm_backend::loadCached(key);
      if (kept && (*kept == "llvm" || *kept == "onednn")) {
        if (options_.report) options_.report(fmt::format("auto: {} for @{} (measured before; kept in the compile cache)", *kept, graph().name()));
        pick(*kept == "llvm" ? llvm_ : onednn_);
        return;
      }
    }
    auto keep = [&](const char *name) {
      if (options_.cache) llvm_backend::storeCached(key, name);
    };
    using Clock = std::chrono::steady_clock;
    // A user error (an id out of range) is reported by the first backend,
    // as without auto; an LLVM failure only takes llvm out of the choice.
    onednn_->runInto(inputs, params, outputs);
    try {
      llvm_->runInto(inputs, params, outputs);
    } catch (const std::exception &e) {
      if (options_.report) options_.report(fmt::format("auto: onednn for @{} (llvm failed: {})", graph().name(), e.what()));
      pick(onednn_);
      return; // not kept: a later kiln may compile it
    }
    std::vector<double> times[2];
    runtime::Executable *backends[2] = {onednn_.get(), llvm_.get()};
    for (int t = 0; t < kTrials; ++t)
      for (int k = 0; k < 2; ++k) {
        auto t0 = Clock::now();
        backends[k]->runInto(inputs, params, outputs);
        times[k].push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
    for (auto &t : times) std::sort(t.begin(), t.end());
    double onednnMs = times[0][kTrials / 2], llvmMs = times[1][kTrials / 2];
    // Every new shape costs the llvm backend a compile (the oneDNN backend's
    // plans take about a millisecond): its faster steps must repay it over
    // kRunsPerPlan runs. A warm compile cache makes that cost small.
    double compileMs = llvm_->compileSeconds() * 1e3;
    bool llvmWins = llvmMs + compileMs / kRunsPerPlan < onednnMs;
    if (options_.report)
      options_.report(fmt::format("auto: {} for @{} (median of {} runs: llvm {:.3f} ms + compile {:.1f} ms / {} runs, "
                                  "onednn {:.3f} ms)",
                                  llvmWins ? "llvm" : "onednn", graph().name(), kTrials, llvmMs, compileMs,
                                  kRunsPerPlan, onednnMs));
    keep(llvmWins ? "llvm" : "onednn");
    pick(llvmWins ? llvm_ : onednn_);
  }

  void pick(std::unique_ptr<runtime::Executable> &winner) {
    chosen_ = std::move(winner);
    onednn_.reset();
    llvm_.reset();
    chosen_->setProfiling(profiling_);
  }

  ir::Graph graph_;
  runtime::CompileOptions options_;
  std::unique_ptr<runtime::Executable> onednn_, llvm_, chosen_;
  bool profiling_ = false;
};

std::unique_ptr<runtime::Executable> compileAuto(const ir::Graph &g, const runtime::CompileOptions &o) {
  return std::make_unique<AutoExecutable>(g, o);
}

} // namespace

const std::vector<BackendInfo> &registry() {
  static const std::string onednnName = "onednn";
  static const std::vector<BackendInfo> entries = {
      {kDefaultBackend, "the faster of onednn and llvm for the graph, measured on its first run", compileAuto},
      {onednnName, "oneDNN primitives and kiln's OpenMP kernels over one planned arena", onednn::compile},
      {"llvm", "LLVM IR generated per shape and JIT-compiled for this CPU (generated loops and kiln's kernels in one module per shape; GEMMs call oneDNN)", llvm_backend::compile},
      {kOracleBackend, "the plain interpreter, the oracle the others are tested against", compileReference},
  };
  return entries;
}

std::vector<std::string> backendNames() {
  std::vector<std::string> names;
  for (const BackendInfo &b : registry()) names.push_back(b.name);
  return names;
}

std::unique_ptr<runtime::Executable> compile(const ir::Graph &g, const std::string &backend,
                                             const runtime::CompileOptions &options) {
  for (const BackendInfo &b : registry())
    if (backend == b.name) return b.compile(g, options);
  std::vector<std::string> names = backendNames();
  std::string hint = nearestName(backend, names), list;
  for (const std::string &n : names) list += (list.empty() ? "" : ", ") + n;
  throw Error(fmt::format("unknown backend '{}'{}; available: {}", backend,
                          hint.empty() ? "" : " (did you mean '" + hint + "'?)", list));
}

} // namespace kiln::backends
