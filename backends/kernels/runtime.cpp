//===- backends/kernels/runtime.cpp - what the kernels call back into -----===//
//
// kiln_rt_parallel_for on OpenMP, and kiln_rt_index_error. Built into kiln
// only (not into the kernels' bitcode): generated code and the bitcode
// kernels call these by name (backends/llvm/jit.cpp resolves them).
//
//===----------------------------------------------------------------------===//
#include "backends/kernels/parallel.h"

#include <algorithm>
#include <omp.h>

extern "C" void kiln_rt_parallel_for(void (*body)(void *, int64_t, int64_t), void *context, int64_t items,
                                     int64_t minItems) {
  minItems = std::max<int64_t>(minItems, 1);
  int threads = omp_get_max_threads();
  if (threads <= 1 || items < 2 * minItems || omp_in_parallel()) {
    if (items > 0) body(context, 0, items);
    return;
  }
  int parts = static_cast<int>(std::min<int64_t>(threads, items / minItems));
#pragma omp parallel num_threads(parts)
  {
    int64_t t = omp_get_thread_num(), team = omp_get_num_threads();
    int64_t begin = items * t / team, end = items * (t + 1) / team;
    if (end > begin) body(context, begin, end);
  }
}

extern "C" void kiln_rt_index_error(int64_t node, int64_t value, int64_t position, int64_t bound) {
  throw kiln::backends::kernels::IndexError{node, value, position, bound};
}
