//===- backends/backend.h - choosing and invoking a backend -----*- C++ -*-===//
//
// The backend registry: compile(graph, backend name) returns an Executable.
// Every command that runs a graph takes `--backend NAME`, with the names and
// their help read from registry(), so a backend added here is offered (and
// benchmarked) everywhere without changes to the commands. "auto" runs the
// graph on the faster of "onednn" and "llvm", measured on its first run
// (backend.cpp). "reference" is the plain interpreter, the oracle.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/executable.h"

#include <memory>
#include <string>
#include <vector>

namespace kiln::backends {

/// The default of --backend: the faster of the compiling backends.
inline constexpr const char *kDefaultBackend = "auto";
/// The interpreter that defines what each op means; `kiln run` defaults to
/// it, and only it can keep every intermediate value (--dump-all).
inline constexpr const char *kOracleBackend = "reference";

/// One entry of the registry.
struct BackendInfo {
  std::string name;
  std::string summary; ///< one line for --help
  std::unique_ptr<runtime::Executable> (*compile)(const ir::Graph &, const runtime::CompileOptions &);
};

/// Every backend compile() accepts, kDefaultBackend first.
const std::vector<BackendInfo> &registry();

/// The names of registry(), in its order.
std::vector<std::string> backendNames();

/// Compiles g for the named backend; kiln::Error for an unknown name.
std::unique_ptr<runtime::Executable> compile(const ir::Graph &g, const std::string &backend,
                                             const runtime::CompileOptions &options = {});

} // namespace kiln::backends
