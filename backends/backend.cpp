//===- backends/backend.cpp - choosing and invoking a backend -------------===//
//
// The registry is a fixed table: each entry names a backend, says in a line
// what it is, and how to compile for it. The reference backend wraps the
// interpreter.
//
//===----------------------------------------------------------------------===//
#include "backends/backend.h"

#include "backends/llvm/llvm_backend.h"
#include "backends/onednn/onednn_backend.h"
#include "backends/reference/interpreter.h"

#include <fmt/format.h>
#include <thread>

namespace kiln::backends {

namespace {

class ReferenceExecutable : public runtime::Executable {
public:
  ReferenceExecutable(const ir::Graph &g, const runtime::CompileOptions &o) : graph_(g) {
    // Resolved here so that threads() reports what the interpreter uses.
    options_.threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  const ir::Graph &graph() const override { return graph_; }
  runtime::TensorMap run(const runtime::TensorMap &inputs, const runtime::TensorMap &params) override {
    return reference::run(graph_, inputs, params, options_).outputs;
  }
  int threads() const override { return options_.threads; }

private:
  ir::Graph graph_;
  reference::RunOptions options_;
};

std::unique_ptr<runtime::Executable> compileReference(const ir::Graph &g, const runtime::CompileOptions &o) {
  return std::make_unique<ReferenceExecutable>(g, o);
}

} // namespace

const std::vector<BackendInfo> &registry() {
  // "auto" is the fastest backend that runs every graph: oneDNN, which falls
  // back to reference kernels op by op where it has no primitive.
  static const std::string onednnName = "onednn";
  static const std::vector<BackendInfo> entries = {
      {kDefaultBackend, "the fastest backend that runs every graph: " + onednnName, onednn::compile},
      {onednnName, "oneDNN primitives and kiln's OpenMP kernels over one planned arena", onednn::compile},
      {"llvm", "LLVM IR generated per shape and JIT-compiled for this CPU (the elementwise ops so far; oneDNN's GEMMs and kiln's kernels for the rest)", llvm_backend::compile},
      {kOracleBackend, "the plain interpreter, the oracle the others are tested against", compileReference},
  };
  return entries;
}

std::vector<std::string> backendNames() {
  std::vector<std::string> names;
  for (const BackendInfo &b : registry()) names.push_back(b.name);
  return names;
}

std::unique_ptr<runtime::Executable> compile(const ir::Graph &g, const std::string &backend,
                                             const runtime::CompileOptions &options) {
  for (const BackendInfo &b : registry())
    if (backend == b.name) return b.compile(g, options);
  std::vector<std::string> names = backendNames();
  std::string hint = nearestName(backend, names), list;
  for (const std::string &n : names) list += (list.empty() ? "" : ", ") + n;
  throw Error(fmt::format("unknown backend '{}'{}; available: {}", backend,
                          hint.empty() ? "" : " (did you mean '" + hint + "'?)", list));
}

} // namespace kiln::backends
