//===- tests/unit/backend_threads_test.cpp - --threads reaches the backends -===//
//
// runtime::CompileOptions::threads (the commands' --threads) must set the
// worker threads every backend runs on: the OpenMP team of the oneDNN
// backend's primitives and kernels (measured by the backend, reported by
// Executable::threads()) and the interpreter's thread pool. Plans under the
// single-thread threshold (batch-1 inference) stay on one thread whatever
// is asked, and a run leaves OpenMP's thread count as it found it.
//
//===----------------------------------------------------------------------===//
#include "backends/backend.h"
#include "frontend/lower.h"
#include "runtime/init.h"

#include <doctest/doctest.h>
#include <omp.h>
#include <thread>

using namespace kiln;

namespace {

/// The additive example's forward graph (vocabulary 50) and a batch of
/// tokens: B=16, T=32 is about 19 MFLOP, above the single-thread threshold.
struct Model {
  frontend::LoweredModel lowered;
  const ir::Graph *forward = nullptr;
  runtime::TensorMap params;

  Model() {
    frontend::LowerOptions opts;
    opts.overrides = {{"vocab", "50"}};
    lowered = frontend::compileFile(std::string(KILN_SOURCE_DIR) + "/examples/classifier_additive.kiln", opts);
    forward = lowered.module.find("forward");
    params = runtime::materializeParams(*forward, {}, 1);
  }

  int threadsOfRun(const std::string &backend, int threads, int64_t batch, int64_t seq) const {
    runtime::CompileOptions options;
    options.threads = threads;
    options.cache = false;
    auto exe = backends::compile(*forward, backend, options);
    runtime::Tensor tokens(ir::DType::I32, {batch, seq});
    for (int64_t i = 0; i < tokens.numel(); ++i) tokens.i32()[i] = static_cast<int32_t>(2 + i % 48);
    exe->run({{"tokens", tokens}}, params);
    return exe->threads();
  }
};

} // namespace

TEST_CASE("--threads sets the worker threads of every backend") {
  Model m;
  int ompDefault = omp_get_max_threads();
  for (int threads : {1, 3}) {
    CAPTURE(threads);
    CHECK(m.threadsOfRun("onednn", threads, 16, 32) == threads);
    CHECK(m.threadsOfRun("reference", threads, 16, 32) == threads);
    // The run restores OpenMP's count for the rest of the process.
    CHECK(omp_get_max_threads() == ompDefault);
  }
  // 0 is OpenMP's default for oneDNN and every core for the interpreter.
  CHECK(m.threadsOfRun("onednn", 0, 16, 32) == ompDefault);
  CHECK(m.threadsOfRun("reference", 0, 16, 32) == static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  // A batch-1 plan is below the threshold: one thread, as measured to be faster.
  CHECK(m.threadsOfRun("onednn", 3, 1, 8) == 1);
}
