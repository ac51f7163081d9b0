//===- tests/fuzz/fuzz_dsl.cpp - libFuzzer target: the DSL frontend -------===//
//
// Feeds arbitrary bytes to the frontend as a .kiln source: lexing, parsing,
// lowering (hyper-parameters, layer instantiation, shape checks through
// ir::Builder) and verification. A rejected program must be a kiln::Error.
// A program that lowers is held to two oracles no sanitizer would check:
// the module verifies, and its printed IR parses back and prints identically
// (the IR text is what `kiln compile --emit=ir` hands to every other tool).
//
//===----------------------------------------------------------------------===//
#include "frontend/ast.h"
#include "frontend/lower.h"
#include "frontend/parser.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "tests/fuzz/fuzz_support.h"

#include <string>

using namespace kiln;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string text(reinterpret_cast<const char *>(data), size);
  const std::string file = "fuzz.kiln";

  // The AST printer (`--emit=ast`) sees every program that parses, including
  // those that fail to lower.
  fuzz::expectOnlyKilnErrors([&] {
    registerSource(file, text);
    std::string ast = frontend::printAst(frontend::parseProgram(text, file));
    (void)ast;
  });

  std::string printed;
  fuzz::expectOnlyKilnErrors([&] {
    frontend::LoweredModel lowered = frontend::compileSource(text, file);
    ir::verify(lowered.module);
    printed = ir::printModule(lowered.module);
  });
  if (printed.empty()) return 0;

  // From here on a kiln::Error is the frontend producing IR that kiln itself
  // rejects: a bug, not a user error.
  try {
    ir::Module reparsed = ir::parseModule(printed, "printed.ir");
    ir::verify(reparsed);
    std::string again = ir::printModule(reparsed);
    if (again != printed) fuzz::oracleFailure("printed IR does not print the same after parsing", printed + "\n---\n" + again);
  } catch (const Error &e) {
    fuzz::oracleFailure("the IR of a lowered model does not parse or verify", formatError(e) + printed);
  }
  return 0;
}
