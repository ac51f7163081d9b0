//===- backends/llvm/runtime.cpp - what generated code calls --------------===//
#include "backends/llvm/runtime.h"

#include "backends/common/planned_executable.h"

#include <algorithm>
#include <omp.h>

extern "C" void kiln_rt_parallel_for(void *, kiln::backends::llvm_backend::BodyFn body, void *const *values,
                                     int64_t items, int64_t minItems) {
  int threads = omp_get_max_threads();
  if (threads <= 1 || items < 2 * std::max<int64_t>(minItems, 1)) {
    if (items > 0) body(values, 0, items);
    return;
  }
  int64_t parts = std::min<int64_t>(threads, items / std::max<int64_t>(minItems, 1));
#pragma omp parallel num_threads(static_cast<int>(parts))
  {
    int64_t t = omp_get_thread_num(), team = omp_get_num_threads();
    int64_t begin = items * t / team, end = items * (t + 1) / team;
    if (end > begin) body(values, begin, end);
  }
}

extern "C" void kiln_rt_step(void *host, int64_t k) {
  auto *context = static_cast<kiln::backends::llvm_backend::HostContext *>(host);
  context->plan->steps[static_cast<size_t>(k)].run();
}
