//===- tools/commands.h - the kiln driver's commands ------------*- C++ -*-===//
//
// Each command declares its options on a cli::Command (tools/cli.h), parses
// argv from argv[2] on and returns the exit status; kiln::Error and
// cli::UsageError propagate to main() in tools/kiln.cpp.
//
//===----------------------------------------------------------------------===//
#pragma once

namespace kiln::tools {

int cmdTrain(int argc, char **argv);
int cmdEval(int argc, char **argv);
int cmdPredict(int argc, char **argv);
int cmdBench(int argc, char **argv);
int cmdExport(int argc, char **argv);
int cmdReport(int argc, char **argv);

} // namespace kiln::tools
