//===- tools/trained_model.h - a checkpoint's model, for the commands -*- C++ -*-===//
//
// What eval, predict and export share (tools/train.cpp): the options that
// name a trained model, and the model compiled with its checkpoint's
// hyper-parameters; and the optimizer of a checkpoint's recipe.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "frontend/lower.h"
#include "passes/training.h"
#include "runtime/checkpoint.h"
#include "tools/cli.h"

#include <optional>
#include <string>
#include <vector>

namespace kiln::tools {

/// --ckpt, --model, --max-len and --param: a trained model for eval and predict.
struct TrainedModelArgs {
  std::string ckpt;
  std::optional<std::string> model;
  std::optional<int64_t> maxLen;
  std::vector<std::string> params;
};

void declare(cli::Command &cmd, TrainedModelArgs &o);

/// Compiles the model with a checkpoint's hyper-parameters and checks that
/// the checkpoint holds every parameter of its forward graph.
struct LoadedModel {
  runtime::Checkpoint ckpt;
  frontend::LoweredModel model;
  const ir::Graph *forward = nullptr;
  runtime::InputRecipe inputs; ///< what the data pipeline gives forward's inputs
};

LoadedModel loadTrained(const TrainedModelArgs &args);

/// The optimizer of a training configuration (a checkpoint's, or the
/// command line's); `file` names it in errors.
passes::OptimizerConfig optimizerFromConfig(const runtime::Config &config, const std::string &file, uint64_t seed);

} // namespace kiln::tools
