//===- backends/backend.h - choosing and invoking a backend -----*- C++ -*-===//
//
// The backend registry: compile(graph, backend name) returns an Executable.
// Every command takes `--backend=NAME`; "auto" picks the fastest backend that
// supports the graph: "onednn" (which falls back to reference kernels op by
// op). "reference" is the plain interpreter, the oracle.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/executable.h"

#include <memory>
#include <string>
#include <vector>

namespace kiln::backends {

/// Names accepted by compile(), "auto" first.
std::vector<std::string> backendNames();

/// Compiles g for the named backend; kiln::Error for an unknown name.
std::unique_ptr<runtime::Executable> compile(const ir::Graph &g, const std::string &backend,
                                             const runtime::CompileOptions &options = {});

} // namespace kiln::backends
