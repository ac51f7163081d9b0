//===- tests/fuzz/fuzz_ir.cpp - libFuzzer target: IR parser, verifier, passes -===//
//
// Feeds arbitrary bytes to ir::parseModule as textual IR (what `kiln compile
// x.ir` and every pass test read), then verifies it. A module that verifies
// goes on to the passes that take IR from the user: the memory planner and
// the FLOP counter at small bound extents for every graph, and the training
// step builder (forward + loss + autodiff + optimizer) when there is a
// @forward graph; and the default pass pipeline, verifying after every
// rewrite, on every verified graph and on that training graph. Oracles
// beyond "no crash": a verified module prints and re-parses to the same
// text, a training graph that builds verifies, and no pass rejects or
// breaks a verified graph.
//
//===----------------------------------------------------------------------===//
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "passes/flops.h"
#include "passes/memory_plan.h"
#include "passes/pipeline.h"
#include "passes/training.h"
#include "tests/fuzz/fuzz_support.h"

#include <string>

using namespace kiln;

namespace {

/// Small extents for every input symbol: the planner's arithmetic runs on
/// them, and large ones would only make the fuzzer allocate nothing slower.
ir::SymbolBindings smallBindings(const ir::Graph &g) {
  ir::SymbolBindings b;
  int64_t next = 2;
  for (const std::string &sym : g.inputSymbols()) b[sym] = next++;
  return b;
}

/// The default pipeline of the graph's role, verifying after every rewrite:
/// a pass may decline to rewrite, but never fail on or break a valid graph.
void runDefaultPipeline(ir::Graph g, const std::string &printed) {
  passes::PipelineOptions options;
  options.verifyEach = true;
  try {
    passes::runPipeline(g, options);
  } catch (const Error &e) {
    fuzz::oracleFailure("the default pass pipeline fails on a verified graph", formatError(e) + printed);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string text(reinterpret_cast<const char *>(data), size);

  ir::Module module;
  bool valid = false;
  fuzz::expectOnlyKilnErrors([&] {
    registerSource("fuzz.ir", text);
    module = ir::parseModule(text, "fuzz.ir");
    ir::verify(module);
    valid = true;
  });
  if (!valid) return 0;

  const std::string printed = ir::printModule(module);
  try {
    ir::Module reparsed = ir::parseModule(printed, "printed.ir");
    ir::verify(reparsed);
    std::string again = ir::printModule(reparsed);
    if (again != printed) fuzz::oracleFailure("printed IR does not print the same after parsing", printed + "\n---\n" + again);
  } catch (const Error &e) {
    fuzz::oracleFailure("the printed form of a verified module does not parse or verify", formatError(e) + printed);
  }

  for (const ir::Graph &g : module.graphs()) {
    ir::SymbolBindings bindings = smallBindings(g);
    fuzz::expectOnlyKilnErrors([&] {
      passes::MemoryPlan plan = passes::planMemory(g, bindings);
      std::string report = passes::printMemoryPlan(g, bindings, plan);
      (void)report;
    });
    fuzz::expectOnlyKilnErrors([&] { (void)passes::graphFlops(g, bindings); });
    runDefaultPipeline(g, printed);
  }

  if (const ir::Graph *forward = module.find("forward")) {
    ir::Graph train;
    bool built = false;
    fuzz::expectOnlyKilnErrors([&] {
      train = passes::buildTrainGraph(*forward, passes::OptimizerConfig{});
      built = true;
    });
    if (built) {
      try {
        ir::verify(train);
      } catch (const Error &e) {
        fuzz::oracleFailure("the training graph built from a verified @forward does not verify",
                            formatError(e) + printed);
      }
      runDefaultPipeline(train, printed);
    }
  }
  return 0;
}
