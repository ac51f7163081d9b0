//===- tools/options.h - options that several kiln commands share -*- C++ -*-===//
//
// Each group of shared options is a struct with its defaults and one
// function that declares the group on a command, so that train, compile
// --graph=train, run --graph=train and bench take the same optimizer options
// with the same help, and every command that runs a graph takes the same
// --backend (its names read from the registry, backends/backend.h) and
// --threads.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "backends/backend.h"
#include "passes/pipeline.h"
#include "passes/training.h"
#include "runtime/distributed.h"
#include "runtime/executable.h"
#include "tools/cli.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

namespace kiln::tools {

/// The optimizer of a training step.
struct OptimizerOptions {
  std::string optimizer = "adam";
  double momentum = 0;
  bool nesterov = false;
  double weightDecay = 0;
  double clipNorm = 0;
};

/// --optimizer, --momentum, --nesterov, --weight-decay, --clip-norm.
inline void declareOptimizerOptions(cli::Command &cmd, OptimizerOptions &o) {
  // The names are passes::OptimizerConfig::parseKind's, which checks them again.
  cmd.option("--optimizer", o.optimizer, "NAME", "the optimizer of the training step")
      .choices({{"adam", "Adam (Kingma & Ba), as torch.optim.Adam"},
                {"adamw", "Adam with decoupled weight decay, as torch.optim.AdamW"},
                {"lazy-adam", "Adam, but an embedding table's step updates only the rows its ids name (their value "
                              "and moments), as torch.optim.SparseAdam: a step costs the rows it touches"},
                {"sgd", "stochastic gradient descent, with --momentum and --nesterov"}});
  cmd.option("--momentum", o.momentum, "M", "SGD momentum");
  cmd.flag("--nesterov", o.nesterov, "SGD Nesterov momentum (needs --momentum > 0)");
  cmd.option("--weight-decay", o.weightDecay, "W", "L2 (adam, lazy-adam, sgd) or decoupled (adamw) weight decay");
  cmd.option("--clip-norm", o.clipNorm, "C", "clip gradients to global L2 norm C").defaultText("off");
}

/// The checked optimizer configuration; UsageError for options that do not
/// go together.
inline passes::OptimizerConfig optimizerConfig(const OptimizerOptions &o) {
  passes::OptimizerConfig c;
  c.kind = passes::OptimizerConfig::parseKind(o.optimizer);
  c.momentum = o.momentum;
  c.nesterov = o.nesterov;
  c.weightDecay = o.weightDecay;
  c.clipNorm = o.clipNorm;
  if (c.kind != passes::OptimizerConfig::Kind::Sgd && (c.momentum != 0 || c.nesterov))
    throw cli::UsageError("--momentum and --nesterov apply to --optimizer sgd");
  if (c.nesterov && c.momentum == 0) throw cli::UsageError("--nesterov needs --momentum > 0");
  return c;
}

/// Which backend runs the graph, on how many threads.
struct BackendOptions {
  std::string backend = backends::kDefaultBackend;
  int64_t threads = 0;
  bool noCache = false;

  runtime::CompileOptions compileOptions() const {
    runtime::CompileOptions o;
    o.threads = static_cast<int>(std::min<int64_t>(threads, 1 << 16));
    o.cache = !noCache;
    return o;
  }
};

/// The value bench's --backend takes to run every backend of the registry.
inline constexpr const char *kAllBackends = "all";

/// --backend (one of the registry's, and with `orAll` also "all", the
/// default then) and --threads.
inline void declareBackendOptions(cli::Command &cmd, BackendOptions &o, bool orAll = false) {
  std::vector<cli::Choice> names;
  for (const backends::BackendInfo &b : backends::registry()) names.push_back({b.name, b.summary});
  if (orAll) {
    names.push_back({kAllBackends, "each of the above but auto, one after the other"});
    o.backend = kAllBackends;
  }
  cmd.option("--backend", o.backend, "NAME", "the backend that runs the graph").choices(std::move(names));
  cmd.option("--threads", o.threads, "N", "worker threads").defaultText("all cores");
  cmd.flag("--no-cache", o.noCache,
           "compile afresh, neither reading nor writing the compile cache (`kiln cache info`; backends that "
           "compile code: llvm)");
}

/// The pass pipeline between the frontend (or autodiff) and the backend,
/// and what to show of it.
struct PassOptions {
  std::optional<std::string> passes; ///< comma-separated; "" runs none
  std::vector<std::string> disabled;
  bool printBeforeAll = false, printAfterAll = false;
  std::vector<std::string> printAfter;
  bool verifyEach = false, timePasses = false, listPasses = false;

  /// The options for passes::runPipeline, printing to standard error.
  passes::PipelineOptions pipeline() const {
    passes::PipelineOptions p;
    if (passes) {
      p.passes.emplace();
      size_t pos = 0;
      while (pos < passes->size()) {
        size_t comma = passes->find(',', pos);
        std::string name = passes->substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        if (name.empty()) throw cli::UsageError(fmt::format("--passes has an empty name in '{}'", *passes));
        p.passes->push_back(name);
        if (comma == std::string::npos) break;
        pos = comma + 1;
      }
    }
    p.disabled = disabled;
    p.printBeforeAll = printBeforeAll;
    p.printAfterAll = printAfterAll;
    p.printAfter = printAfter;
    p.verifyEach = verifyEach;
    p.timePasses = timePasses;
    p.print = [](const std::string &text) {
      std::fflush(stdout);
      std::fwrite(text.data(), 1, text.size(), stderr);
      std::fflush(stderr);
    };
    return p;
  }
};

/// The registry and the default pipelines, for --list-passes.
inline std::string listPasses() {
  std::string out = "passes (--passes=a,b,c runs these in order; --disable-pass=NAME drops one):\n";
  size_t width = 0;
  for (const passes::PassInfo &p : passes::allPasses()) width = std::max(width, std::string_view(p.name).size());
  for (const passes::PassInfo &p : passes::allPasses()) out += fmt::format("  {:<{}} {}\n", p.name, width, p.summary);
  auto join = [](const std::vector<std::string> &names) {
    std::string s;
    for (const std::string &n : names) s += (s.empty() ? "" : ",") + n;
    return s;
  };
  out += "default pipelines:\n";
  out += "  inference  " + join(passes::defaultPipeline(passes::GraphRole::Inference)) + "\n";
  out += "  training   " + join(passes::defaultPipeline(passes::GraphRole::Training)) + "\n";
  return out;
}

/// Whether the command line asks for --list-passes, which (like --help)
/// needs none of the command's required arguments: checked before parsing.
inline bool listPassesRequested(int argc, char **argv) {
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") return false;
    if (a == "--list-passes") return true;
  }
  return false;
}

/// --passes, --disable-pass, --print-ir-before-all, --print-ir-after-all,
/// --print-ir-after, --verify-each, --time-passes, --list-passes.
inline void declarePassOptions(cli::Command &cmd, PassOptions &o) {
  // Names are checked as the command line is parsed, before any work.
  auto checkName = [](const char *option) {
    return [option](const std::string &name) {
      if (passes::findPass(name)) return;
      std::vector<std::string> names;
      for (const passes::PassInfo &p : passes::allPasses()) names.push_back(p.name);
      std::string hint = nearestName(name, names);
      throw cli::UsageError(fmt::format("{}: unknown pass '{}'{}; see --list-passes", option, name,
                                        hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
    };
  };
  cmd.section("compiler passes");
  cmd.option("--passes", o.passes, "A,B,...", "run these passes, in this order, instead of the default pipeline "
                                              "(--passes= runs none)")
      .defaultText("the default pipeline of the graph (--list-passes)")
      .check([checkName](const std::string &list) {
        size_t pos = 0;
        while (pos <= list.size() && !list.empty()) {
          size_t comma = list.find(',', pos);
          std::string name = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
          if (name.empty()) throw cli::UsageError(fmt::format("--passes has an empty name in '{}'", list));
          checkName("--passes")(name);
          if (comma == std::string::npos) break;
          pos = comma + 1;
        }
      });
  cmd.option("--disable-pass", o.disabled, "NAME", "leave this pass out").check(checkName("--disable-pass"));
  cmd.flag("--print-ir-before-all", o.printBeforeAll, "print each graph (to stderr) before every pass that changes it");
  cmd.flag("--print-ir-after-all", o.printAfterAll, "print each graph (to stderr) after every pass that changes it");
  cmd.option("--print-ir-after", o.printAfter, "NAME", "print the graph after this pass when it changes it")
      .check(checkName("--print-ir-after"));
  cmd.flag("--verify-each", o.verifyEach, "verify the graph after every rewrite and every pass");
  cmd.flag("--time-passes", o.timePasses, "print (to stderr) the wall time of each pass and of the backend's compile");
  cmd.flag("--list-passes", o.listPasses, "print the passes and the default pipelines, and exit");
}

/// The graph as the backend runs it: g through the pass pipeline (printing
/// and timing as asked), compiled for the chosen backend.
inline std::unique_ptr<runtime::Executable> compileGraph(const ir::Graph &g, const BackendOptions &backend,
                                                         const PassOptions &passOptions) {
  ir::Graph optimized = g;
  passes::PipelineOptions pipeline = passOptions.pipeline();
  std::vector<passes::PassRecord> records = passes::runPipeline(optimized, pipeline);
  auto t0 = std::chrono::steady_clock::now();
  runtime::CompileOptions options = backend.compileOptions();
  if (passOptions.timePasses) options.report = [print = pipeline.print](const std::string &line) { print(line + "\n"); };
  auto exe = backends::compile(optimized, backend.backend, options);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (passOptions.timePasses)
    pipeline.print(passes::formatPassTimes(
        records, {{fmt::format("backend {} compile of @{} (plans per shape are built at first run)", backend.backend,
                               g.name()),
                   seconds}}));
  return exe;
}

/// The symbol sizes of a --bind SYMBOL=N[,SYMBOL=N...]; UsageError (with
/// `what` saying what N must be, if anything) for a malformed list or an N
/// below `least`.
inline ir::SymbolBindings parseBindList(const std::string &text, int64_t least, const char *what = "") {
  ir::SymbolBindings b;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    auto eq = item.find('=');
    char *end = nullptr;
    long long v = eq == std::string::npos ? -1 : std::strtoll(item.c_str() + eq + 1, &end, 10);
    if (eq == std::string::npos || eq == 0 || v < least || *end != '\0' || end == item.c_str() + eq + 1)
      throw cli::UsageError(fmt::format("--bind needs SYMBOL=N[,SYMBOL=N...]{}, got '{}'", what, text));
    b[item.substr(0, eq)] = v;
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return b;
}

/// --param NAME=VAL, repeatable.
inline void declareParamOption(cli::Command &cmd, std::vector<std::string> &params) {
  cmd.option("--param", params, "NAME=VAL", "override a hyper-parameter (`param` line) of the model")
      .check([](const std::string &p) {
        if (p.find('=') == std::string::npos || p.front() == '=')
          throw cli::UsageError(fmt::format("--param needs NAME=VALUE, got '{}'", p));
      });
}

/// The --param overrides by name (each checked at parsing to be NAME=VALUE).
inline std::map<std::string, std::string> paramOverrides(const std::vector<std::string> &params) {
  std::map<std::string, std::string> out;
  for (const std::string &p : params) {
    auto eq = p.find('=');
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return out;
}

/// A data-parallel run's backend options (kiln train and kiln bench under
/// mpirun): the ranks of one machine share its cores, and `auto`, which
/// times the backends per graph (two ranks may time differently), means
/// onednn, since every rank must round alike.
inline void useDataParallelBackend(BackendOptions &o) {
  if (o.threads == 0) o.threads = runtime::threadsPerRank();
  if (o.backend == "auto") o.backend = "onednn";
}

/// The two graphs of a data-parallel step compiled, and what
/// runtime::DataParallelStep needs of them.
struct CompiledSplitStep {
  std::unique_ptr<runtime::Executable> gradients, update;
  runtime::DataParallel dataParallel;
};
inline std::unique_ptr<CompiledSplitStep> compileSplitStep(const passes::SplitStep &split, runtime::Communicator &comm,
                                                           const BackendOptions &backend,
                                                           const PassOptions &passOptions) {
  auto c = std::make_unique<CompiledSplitStep>();
  c->gradients = compileGraph(split.gradients, backend, passOptions);
  c->update = compileGraph(split.update, backend, passOptions);
  c->dataParallel.comm = &comm;
  c->dataParallel.gradients = c->gradients.get();
  c->dataParallel.update = c->update.get();
  c->dataParallel.denseGradients = split.denseGradients;
  for (const passes::RowTable &t : split.rowTables) c->dataParallel.rowTables.push_back({t.ids, t.gradientRows, t.param});
  return c;
}

} // namespace kiln::tools
