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
#include "passes/training.h"
#include "runtime/executable.h"
#include "tools/cli.h"

#include <map>
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
                {"sgd", "stochastic gradient descent, with --momentum and --nesterov"}});
  cmd.option("--momentum", o.momentum, "M", "SGD momentum");
  cmd.flag("--nesterov", o.nesterov, "SGD Nesterov momentum (needs --momentum > 0)");
  cmd.option("--weight-decay", o.weightDecay, "W", "L2 (adam, sgd) or decoupled (adamw) weight decay");
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

  runtime::CompileOptions compileOptions() const {
    runtime::CompileOptions o;
    o.threads = static_cast<int>(std::min<int64_t>(threads, 1 << 16));
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

} // namespace kiln::tools
