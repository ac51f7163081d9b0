//===- backends/llvm/llvm_backend.cpp - kiln's kernels as LLVM-JIT code ---===//
//
// Per plan: each node is offered to the code generator first; a node it
// takes becomes a step without a host function (its code is in the
// module), the others go to kiln's kernels, oneDNN or the reference as on
// the oneDNN backend. Once every node has its step, the module gets its
// entry function, is optimised and JIT-compiled, and the generated steps
// get their function's address (for per-step profiling; an ordinary run
// calls the entry only).
//
//===----------------------------------------------------------------------===//
#include "backends/llvm/llvm_backend.h"

#include "backends/common/planned_executable.h"
#include "backends/llvm/codegen.h"
#include "backends/llvm/annotate.h"
#include "backends/llvm/compile_cache.h"
#include "backends/llvm/jit.h"
#include "backends/llvm/runtime.h"
#include "backends/onednn/onednn_backend.h"

#include "ir/printer.h"

#include <chrono>
#include <fmt/format.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/raw_ostream.h>

namespace kiln::backends::llvm_backend {

namespace {

std::string moduleText(const llvm::Module &m);

using EntryFn = void (*)(void *const *values, void *host);
using StepFn = void (*)(void *const *values, void *host);

/// What the backend keeps for a plan: its compiled code and the context
/// the code's host calls see.
struct CompiledPlan {
  std::unique_ptr<PlanModule> pending; ///< while the plan is being built
  std::chrono::steady_clock::time_point started; ///< when its first node was lowered
  std::vector<bool> generated;         ///< by step
  std::unique_ptr<CompiledModule> code;
  EntryFn entry = nullptr;
  HostContext host;
};

class LlvmExecutable : public PlannedExecutable {
public:
  LlvmExecutable(const ir::Graph &g, const runtime::CompileOptions &o)
      : PlannedExecutable(g, o), onednn_(graph_), options_(o), graphText_(ir::printGraph(graph_)) {}

protected:
  bool lowerNode(Plan &p, size_t i) override {
    CompiledPlan &c = state(p);
    size_t step = p.steps.size();
    if (c.pending->emitNode(i, step)) {
      addStep(p, i, fmt::format("{} (llvm)", ir::opName(graph_.nodes()[i].op)), nullptr);
      return true;
    }
    if (std::optional<KernelCall> call = kernelCall(graph_, p, i, /*preferKernels=*/true)) {
      c.pending->emitKernelCall(*call, i, step);
      addStep(p, i, fmt::format("{} (llvm, {})", call->label, call->library), nullptr);
      return true;
    }
    return onednn_.lower(p, i);
  }

  void finishPlan(Plan &p) override {
    using Clock = std::chrono::steady_clock;
    auto ms = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    CompiledPlan &c = state(p);
    Clock::time_point t0 = c.started; // the IR of the nodes was made as they were lowered
    c.generated.assign(p.steps.size(), false);
    for (size_t k = 0; k < p.steps.size(); ++k) c.generated[k] = !p.steps[k].run;
    std::string key = cacheKey(identity(p));
    std::optional<std::string> object = options_.cache && !emit_ ? loadCached(key) : std::nullopt;
    bool hit = object.has_value();
    double irMs = 0, optMs = 0, codeMs = 0;
    if (!hit) {
      std::vector<ir::NodeId> stepNodes;
      for (const Plan::Step &st : p.steps) stepNodes.push_back(st.node);
      c.pending->finish(c.generated, stepNodes);
      std::unique_ptr<llvm::Module> m = c.pending->takeModule();
      targetHost(*m);
      auto t1 = Clock::now();
      irMs = ms(t0, t1);
      if (export_) {
        exportModule(p, c, *m);
        m.reset(); // before its context, which the pending module owns
        c.pending.reset();
        return;
      }
      optimize(*m);
      auto t2 = Clock::now();
      optMs = ms(t1, t2);
      if (emit_) {
        emitted_ = *emit_ == EmitKind::LlvmIr ? moduleText(*m) : *emit_ == EmitKind::Assembly ? emitAssembly(*m)
                                                                                              : emitObject(*m);
        m.reset(); // before its context, which the pending module owns
        c.pending.reset();
        return; // shown, not run
      }
      object = emitObject(*m);
      codeMs = ms(t2, Clock::now());
      if (options_.cache) storeCached(key, *object);
    }
    c.pending.reset();
    auto t3 = Clock::now();
    c.code = loadObject(*object);
    c.entry = reinterpret_cast<EntryFn>(c.code->lookup(PlanModule::kEntry));
    c.host.plan = &p;
    for (size_t k = 0; k < p.steps.size(); ++k) {
      if (!c.generated[k]) continue;
      auto fn = reinterpret_cast<StepFn>(c.code->lookup(PlanModule::stepName(k)));
      Plan *plan = &p;
      HostContext *host = &c.host;
      p.steps[k].run = [fn, plan, host] { fn(plan->ptr.data(), host); };
    }
    if (options_.report) {
      std::string shape;
      for (const auto &[symbol, value] : p.bindings) shape += fmt::format("{}{}={}", shape.empty() ? "" : ",", symbol, value);
      double linkMs = ms(t3, Clock::now()), total = ms(t0, Clock::now());
      options_.report(hit ? fmt::format("llvm: @{} at {}: {:.1f} ms from the compile cache (lowering {:.1f} ms, JIT "
                                        "link {:.1f} ms)",
                                        graph_.name(), shape, total, ms(t0, t3), linkMs)
                          : fmt::format("llvm: @{} at {}: {:.1f} ms compiled{} (IR {:.1f} ms, O3 {:.1f} ms, machine "
                                        "code {:.1f} ms, JIT link {:.1f} ms)",
                                        graph_.name(), shape, total, options_.cache ? " and cached" : "", irMs, optMs,
                                        codeMs, linkMs));
    }
  }

  // One compiled function runs the whole plan: nothing is known before it
  // returns (profiling runs the steps one by one, but is not the normal run).
  bool runsStepByStep() const override { return false; }

  void runPlan(Plan &p) override {
    if (profiling()) return PlannedExecutable::runPlan(p);
    CompiledPlan &c = state(p);
    c.entry(p.ptr.data(), &c.host);
  }

  bool inPlace(const Plan &p, const ir::Node &node, size_t operand) const override {
    // The generated loops take their pointers as noalias (no in-place
    // results); the oneDNN primitives keep theirs.
    return false;
    (void)p, (void)node, (void)operand;
  }

  void synchronize() override { onednn_.wait(); }

private:
  CompiledPlan &state(Plan &p) {
    if (!p.backendState) {
      auto c = std::make_shared<CompiledPlan>();
      c->pending = std::make_unique<PlanModule>(graph_, p, "kiln");
      c->started = std::chrono::steady_clock::now();
      p.backendState = c;
    }
    return *static_cast<CompiledPlan *>(p.backendState.get());
  }

  /// What the plan's code depends on besides the build and the host (the
  /// compile cache's key, compile_cache.h): the graph, the bindings, and
  /// the steps, which of them generated.
  std::string identity(const Plan &p) const {
    std::string id = graphText_;
    for (const auto &[symbol, value] : p.bindings) id += fmt::format("bind {}={}\n", symbol, value);
    for (size_t k = 0; k < p.steps.size(); ++k)
      id += fmt::format("step {} node {} {}{}\n", k, p.steps[k].node, p.steps[k].run ? "host " : "", p.steps[k].label);
    return id;
  }

  onednn::OnednnLowering onednn_;
  runtime::CompileOptions options_;
  std::string graphText_;

public:
  /// Builds the plan at b only to show its code (emitCode).
  std::string emitFor(const ir::SymbolBindings &b, EmitKind kind) {
    emit_ = kind;
    planFor(b);
    return emitted_;
  }

  /// Builds the plan at b for an exported library (exportPlan).
  ExportedPlan exportFor(const ir::SymbolBindings &b, const std::string &entry) {
    export_ = true;
    exportEntry_ = entry;
    Plan &p = planFor(b);
    exported_.extents = p.extents;
    size_t n = p.extents.size();
    exported_.offsets.resize(n);
    exported_.roots.resize(n);
    exported_.bindable.assign(p.bindable.begin(), p.bindable.end());
    for (size_t v = 0; v < n; ++v) {
      exported_.offsets[v] = p.memory.values[v].offset;
      exported_.roots[v] = rootOf(p, static_cast<ir::ValueId>(v));
    }
    exported_.arenaBytes = p.memory.arenaBytes;
    exported_.threads = p.threads;
    exported_.cpu = hostTarget().cpu;
    exported_.features = hostTarget().features;
    return std::move(exported_);
  }

private:
  /// The plan's module as an exported library's: every step must be code
  /// of the module (generated, or a call of kiln's kernels or oneDNN's
  /// matmul), the entry gets its library's name, the steps become internal.
  void exportModule(Plan &p, CompiledPlan &c, llvm::Module &m) {
    for (size_t k = 0; k < p.steps.size(); ++k) {
      if (c.generated[k]) continue;
      const ir::Node &node = graph_.nodes()[static_cast<size_t>(p.steps[k].node)];
      throw Error(fmt::format("kiln export: {} runs as '{}', which an exported library does not carry yet (it "
                              "carries the llvm backend's code, kiln's kernels and oneDNN's matmuls)",
                              ir::opName(node.op), p.steps[k].label),
                  node.locs.empty() ? SourceLoc{} : node.locs.front());
    }
    for (llvm::Function &f : m)
      if (!f.isDeclaration() && f.getName() != PlanModule::kEntry) f.setLinkage(llvm::GlobalValue::InternalLinkage);
    m.getFunction(PlanModule::kEntry)->setName(exportEntry_);
    optimize(m); // the steps are internal: O3 may inline them into the entry
    exported_.object = emitPicObject(m);
  }

  std::optional<EmitKind> emit_;
  std::string emitted_;
  bool export_ = false;
  std::string exportEntry_;
  ExportedPlan exported_;
};

std::string moduleText(const llvm::Module &m) {
  std::string text;
  llvm::raw_string_ostream os(text);
  m.print(os, nullptr);
  return text;
}

} // namespace

ExportedPlan exportPlan(const ir::Graph &g, const ir::SymbolBindings &bindings, const std::string &entry) {
  runtime::CompileOptions options;
  options.cache = false;
  LlvmExecutable exe(g, options);
  return exe.exportFor(bindings, entry);
}

std::unique_ptr<runtime::Executable> compile(const ir::Graph &g, const runtime::CompileOptions &options) {
  return std::make_unique<LlvmExecutable>(g, options);
}

std::string emitCode(const ir::Graph &g, const ir::SymbolBindings &bindings, EmitKind kind, bool annotate) {
  runtime::CompileOptions options;
  options.cache = false;
  LlvmExecutable exe(g, options);
  std::string code = exe.emitFor(bindings, kind);
  return kind == EmitKind::Assembly && annotate ? annotateAssembly(code) : code;
}

} // namespace kiln::backends::llvm_backend
