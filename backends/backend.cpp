//===- backends/backend.cpp - choosing and invoking a backend -------------===//
//
// The registry is a fixed list: each entry names a backend and how to
// compile for it. The reference backend wraps the interpreter.
//
//===----------------------------------------------------------------------===//
#include "backends/backend.h"

#include "backends/onednn/onednn_backend.h"
#include "backends/reference/interpreter.h"

#include <fmt/format.h>

namespace kiln::backends {

namespace {

class ReferenceExecutable : public runtime::Executable {
public:
  ReferenceExecutable(const ir::Graph &g, const runtime::CompileOptions &o) : graph_(g) { options_.threads = o.threads; }
  const ir::Graph &graph() const override { return graph_; }
  runtime::TensorMap run(const runtime::TensorMap &inputs, const runtime::TensorMap &params) override {
    return reference::run(graph_, inputs, params, options_).outputs;
  }

private:
  ir::Graph graph_;
  reference::RunOptions options_;
};

} // namespace

std::vector<std::string> backendNames() { return {"auto", "onednn", "reference"}; }

std::unique_ptr<runtime::Executable> compile(const ir::Graph &g, const std::string &backend,
                                             const runtime::CompileOptions &options) {
  // "auto" is the fastest backend that runs every graph: oneDNN, which falls
  // back to reference kernels op by op where it has no primitive.
  if (backend == "auto" || backend == "onednn") return onednn::compile(g, options);
  if (backend == "reference") return std::make_unique<ReferenceExecutable>(g, options);
  std::vector<std::string> names = backendNames();
  std::string hint = nearestName(backend, names);
  throw Error(fmt::format("unknown backend '{}'{}; available: auto, onednn, reference", backend,
                          hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
}

} // namespace kiln::backends
