//===- passes/pipeline.h - the pass registry and pass pipelines -*- C++ -*-===//
//
// Every graph-to-graph optimisation pass is one row of allPasses(): a name
// (what --passes and --disable-pass take), a one-line description (what
// --list-passes prints) and a function that rewrites a graph in place and
// says whether it changed it. The default pipelines for inference graphs
// and for training steps are lists of names in pipeline.cpp. runPipeline()
// runs a pipeline with the instrumentation the commands offer: printing the
// IR before or after passes, verifying after each, timing each.
//
// Autodiff and the optimizer update (passes/autodiff.cpp, training.cpp) are
// not in the registry: they build a new graph (the training step) from the
// forward graph rather than rewrite one, and every command that trains runs
// them; the pipeline then optimises the step they built.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"
#include "ir/rewrite.h"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kiln::passes {

struct PassContext {
  /// Verify after every rewrite inside a pass, not only after the pass.
  bool verifyEach = false;
};

using PassFunction = bool (*)(ir::Graph &g, const PassContext &context);

struct PassInfo {
  const char *name;
  const char *summary;
  PassFunction run;
};

/// The registry, in the order --list-passes prints it.
const std::vector<PassInfo> &allPasses();
const PassInfo *findPass(const std::string &name);

/// Which default pipeline a graph gets: a training step (it has a `loss`
/// output, or optimizer ops: a data-parallel step's update half) or an
/// inference graph.
enum class GraphRole { Inference, Training };
GraphRole roleOf(const ir::Graph &g);
std::vector<std::string> defaultPipeline(GraphRole role);

/// What the commands' pass options ask for (tools/options.h declares them).
struct PipelineOptions {
  std::optional<std::vector<std::string>> passes; ///< --passes (replaces the default; empty: none)
  std::vector<std::string> disabled;              ///< --disable-pass
  bool printBeforeAll = false, printAfterAll = false;
  std::vector<std::string> printAfter; ///< --print-ir-after=NAME
  bool verifyEach = false;
  bool timePasses = false;
  /// Where the printing options write (the commands pass stderr, so that
  /// stdout stays the command's own output).
  std::function<void(const std::string &)> print;
};

/// One pass run, for --time-passes and tests.
struct PassRecord {
  std::string pass;
  std::string graph;
  bool changed = false;
  double seconds = 0;
  size_t nodesBefore = 0, nodesAfter = 0;
};

/// Checks every name of the options against the registry (kiln::Error with
/// the nearest name) and returns the list of passes to run for g.
std::vector<const PassInfo *> resolvePipeline(const PipelineOptions &options, GraphRole role);

/// Runs the pipeline on g; the graph is verified after every pass that
/// changed it when options.verifyEach (or in debug builds), and the error
/// then names the pass.
std::vector<PassRecord> runPipeline(ir::Graph &g, const PipelineOptions &options);

/// The --time-passes table for records (of one or more runPipeline calls),
/// plus extra rows (e.g. the backend's compile time).
std::string formatPassTimes(const std::vector<PassRecord> &records,
                            const std::vector<std::pair<std::string, double>> &extra = {});

/// What a rewrite-rule pass does: rules applied to a fixed point with the
/// context's verification; whether any fired.
bool applyRulesPass(ir::Graph &g, const std::vector<ir::rewrite::Rule> &rules, const PassContext &context);

// The passes (one file each).
bool canonicalize(ir::Graph &g, const PassContext &context);
bool eliminateCommonSubexpressions(ir::Graph &g, const PassContext &context);
bool eliminateDeadCode(ir::Graph &g, const PassContext &context);
bool fuseElementwise(ir::Graph &g, const PassContext &context);
bool fuseAttention(ir::Graph &g, const PassContext &context);
bool fuseLinear(ir::Graph &g, const PassContext &context);
bool fuseOptimizer(ir::Graph &g, const PassContext &context);

} // namespace kiln::passes
