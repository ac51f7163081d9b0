//===- tools/commands.h - the kiln driver's commands ------------*- C++ -*-===//
//
// Each command parses its own options (tools/cli.h) and returns the exit
// status; kiln::Error and cli::UsageError propagate to main().
//
//===----------------------------------------------------------------------===//
#pragma once

#include "passes/training.h"
#include "tools/cli.h"

namespace kiln::tools {

int cmdTrain(int argc, char **argv);
int cmdEval(int argc, char **argv);
int cmdPredict(int argc, char **argv);
int cmdBench(int argc, char **argv);

/// The optimizer options shared by train, compile --graph=train and run --graph=train.
passes::OptimizerConfig optimizerConfig(const cli::Args &args);
/// Option names read by optimizerConfig().
inline const std::vector<std::string> optimizerValuedOptions = {"--optimizer", "--momentum", "--weight-decay",
                                                                "--clip-norm"};

} // namespace kiln::tools
