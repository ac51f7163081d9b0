//===- passes/pipeline.cpp - the pass registry and pass pipelines ---------===//
//
// The registry table, the two default pipelines, and the driver that runs
// a pipeline with its instrumentation; see pipeline.h.
//
//===----------------------------------------------------------------------===//
#include "passes/pipeline.h"

#include "ir/diagnostic.h"
#include "ir/printer.h"
#include "ir/verifier.h"

#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <map>
#include <string_view>

namespace kiln::passes {

const std::vector<PassInfo> &allPasses() {
  static const std::vector<PassInfo> table = {
      {"canonicalize", "fold scalar constants; drop x+0, x*1, x/1 and layout no-ops; merge reshape and transpose pairs",
       canonicalize},
      {"cse", "replace an op that repeats an earlier one (same operands and attributes) by the earlier result",
       eliminateCommonSubexpressions},
      {"dce", "remove ops whose results nothing reads", eliminateDeadCode},
      {"fuse-attention",
       "scaled dot-product attention (forward, and with its backward in training steps) into attention and "
       "attention_grad: the [T,T] weights are recomputed, never stored",
       fuseAttention},
      {"fuse-elementwise",
       "chains of elementwise ops on one shape into one elementwise op: one loop, no intermediate in memory",
       fuseElementwise},
      {"fuse-linear",
       "matmul + bias (+ relu/tanh/sigmoid) into matmul_bias; a weight gradient's matmul + sum_to into weight_grad",
       fuseLinear},
      {"fuse-optimizer", "each parameter's adam_moment, adam_moment, adam_update into one adam_step (one pass over memory)",
       fuseOptimizer},
  };
  return table;
}

const PassInfo *findPass(const std::string &name) {
  for (const PassInfo &p : allPasses())
    if (name == p.name) return &p;
  return nullptr;
}

GraphRole roleOf(const ir::Graph &g) {
  for (const ir::Output &o : g.outputs())
    if (o.name == "loss") return GraphRole::Training;
  // The update half of a data-parallel step (passes::buildSplitStep) has
  // no loss but the optimizer's ops.
  for (const ir::Node &n : g.nodes())
    if (n.op == ir::OpKind::AdamMoment || n.op == ir::OpKind::AdamUpdate || n.op == ir::OpKind::AdamRows)
      return GraphRole::Training;
  return GraphRole::Inference;
}

std::vector<std::string> defaultPipeline(GraphRole role) {
  // Inference: the forward graph as the DSL lowered it.
  static const std::vector<std::string> inference = {
      "canonicalize",   // constants and no-ops first, so that duplicates look alike
      "cse",            // e.g. the same mask reshaped for two layers
      "fuse-attention", // before fuse-linear: its patterns see plain matmuls
      "fuse-linear",    // the projections and dense layers left
      "fuse-elementwise", // last: the elementwise ops no other fusion took
      "dce",            // what the rewrites left unread
  };
  // Training: the step autodiff and the optimizer built (forward, backward,
  // update in one graph).
  static const std::vector<std::string> training = {
      "canonicalize",   // autodiff's constants (the loss seed 1.0, schedule scalars)
      "cse",            // forward values autodiff rebuilt, repeated constants
      "fuse-attention", // forward and backward together, or neither
      "fuse-linear",    // projections, dense layers and their weight gradients
      "fuse-optimizer", // each parameter's update in one pass
      "fuse-elementwise", // e.g. the gradient sums where a value has several readers
      "dce",
  };
  return role == GraphRole::Training ? training : inference;
}

namespace {

std::vector<std::string> passNames() {
  std::vector<std::string> names;
  for (const PassInfo &p : allPasses()) names.push_back(p.name);
  return names;
}

const PassInfo &requirePass(const std::string &name, const char *option) {
  if (const PassInfo *p = findPass(name)) return *p;
  std::string hint = nearestName(name, passNames()), list;
  for (const std::string &n : passNames()) list += (list.empty() ? "" : ", ") + n;
  throw Error(fmt::format("{}: unknown pass '{}'{}; passes: {}", option, name,
                          hint.empty() ? "" : " (did you mean '" + hint + "'?)", list));
}

#ifdef NDEBUG
constexpr bool kDebugBuild = false;
#else
constexpr bool kDebugBuild = true;
#endif

} // namespace

bool applyRulesPass(ir::Graph &g, const std::vector<ir::rewrite::Rule> &rules, const PassContext &context) {
  ir::rewrite::RewriteOptions options;
  options.verifyEach = context.verifyEach;
  return !ir::rewrite::applyRules(g, rules, options).empty();
}

std::vector<const PassInfo *> resolvePipeline(const PipelineOptions &options, GraphRole role) {
  for (const std::string &n : options.disabled) requirePass(n, "--disable-pass");
  for (const std::string &n : options.printAfter) requirePass(n, "--print-ir-after");
  std::vector<const PassInfo *> out;
  for (const std::string &n : options.passes ? *options.passes : defaultPipeline(role)) {
    const PassInfo &p = requirePass(n, "--passes");
    if (std::find(options.disabled.begin(), options.disabled.end(), n) == options.disabled.end()) out.push_back(&p);
  }
  return out;
}

std::vector<PassRecord> runPipeline(ir::Graph &g, const PipelineOptions &options) {
  std::vector<PassRecord> records;
  PassContext context;
  context.verifyEach = options.verifyEach || kDebugBuild;
  auto print = [&](const std::string &text) {
    if (options.print) options.print(text);
  };
  for (const PassInfo *pass : resolvePipeline(options, roleOf(g))) {
    // Printing before a pass needs the graph as it was, but only shows it
    // if the pass changes it: keep a copy only when asked.
    std::optional<std::string> before;
    if (options.printBeforeAll) before = ir::printGraph(g);
    PassRecord r{pass->name, g.name(), false, 0, g.nodes().size(), 0};
    auto t0 = std::chrono::steady_clock::now();
    try {
      r.changed = pass->run(g, context);
    } catch (const Error &e) {
      throw Error(fmt::format("pass {} on @{}: {}", pass->name, g.name(), e.message()), e.loc());
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.nodesAfter = g.nodes().size();
    if (r.changed && (options.verifyEach || kDebugBuild)) {
      try {
        ir::verify(g);
      } catch (const Error &e) {
        throw Error(fmt::format("the graph is invalid after pass {}: {}", pass->name, e.message()), e.loc());
      }
    }
    if (r.changed) {
      std::string counts = fmt::format("{} -> {} ops", r.nodesBefore, r.nodesAfter);
      if (before) print(fmt::format("# *** IR before {} on @{} ({}) ***\n{}", pass->name, g.name(), counts, *before));
      bool after = options.printAfterAll || std::find(options.printAfter.begin(), options.printAfter.end(),
                                                      pass->name) != options.printAfter.end();
      if (after) print(fmt::format("# *** IR after {} on @{} ({}) ***\n{}", pass->name, g.name(), counts, ir::printGraph(g)));
    }
    records.push_back(std::move(r));
  }
  return records;
}

std::string formatPassTimes(const std::vector<PassRecord> &records,
                            const std::vector<std::pair<std::string, double>> &extra) {
  double total = 0;
  for (const PassRecord &r : records) total += r.seconds;
  for (const auto &[name, s] : extra) total += s;
  // The pass column is as wide as the longest registered name.
  size_t width = 4;
  for (const PassInfo &p : allPasses()) width = std::max(width, std::string_view(p.name).size());
  std::string out = "# pass timing (wall clock)\n";
  out += fmt::format("# {:>10}  {:>6}  {:<{}} {:<10} {}\n", "ms", "%", "pass", width, "graph", "ops before -> after");
  auto pct = [&](double s) { return total > 0 ? 100.0 * s / total : 0.0; };
  for (const PassRecord &r : records)
    out += fmt::format("# {:>10.3f}  {:>5.1f}%  {:<{}} @{:<9} {} -> {}{}\n", r.seconds * 1e3, pct(r.seconds), r.pass,
                       width, r.graph, r.nodesBefore, r.nodesAfter, r.changed ? "" : " (unchanged)");
  for (const auto &[name, s] : extra) out += fmt::format("# {:>10.3f}  {:>5.1f}%  {}\n", s * 1e3, pct(s), name);
  out += fmt::format("# {:>10.3f}  100.0%  total\n", total * 1e3);
  return out;
}

} // namespace kiln::passes
