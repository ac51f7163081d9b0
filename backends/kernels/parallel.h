//===- backends/kernels/parallel.h - the kernels' one way to use threads -*- C++ -*-===//
//
// Every parallel loop of kiln's kernels goes through parallelFor, which
// calls kiln_rt_parallel_for: the same source then runs on OpenMP's threads
// when GCC builds it into kiln (backends/kernels/runtime.cpp) and when
// clang builds it into the LLVM bitcode that the LLVM backend links into
// each plan (the generated code resolves the call to the same function; an
// OpenMP pragma would need clang's OpenMP runtime there, which is not
// GCC's libgomp that oneDNN runs on).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <type_traits>

extern "C" {
/// Calls body(context, begin, end) over parts of [0, items) that cover it:
/// one part per thread of the current OpenMP team size when there are at
/// least 2 * minItems items, else one call over all of it (outside any
/// parallel region, so that a GEMM inside uses the cores itself).
void kiln_rt_parallel_for(void (*body)(void *context, int64_t begin, int64_t end), void *context, int64_t items,
                          int64_t minItems);
/// Throws kernels::IndexError: an id (or label) `value` at `position` of
/// node `node`'s operand is outside [0, bound). Called by a kernel before
/// any parallel loop, never from inside one.
[[noreturn]] void kiln_rt_index_error(int64_t node, int64_t value, int64_t position, int64_t bound);
}

namespace kiln::backends::kernels {

/// What kiln_rt_index_error throws; the planned executable turns it into a
/// kiln::Error naming the node's op and DSL location.
struct IndexError {
  int64_t node, value, position, bound;
};

/// f(begin, end) over parts of [0, n): on the threads when `parallel`
/// (one part each), else f(0, n). A part allocates its scratch once.
template <typename F> void parallelFor(int64_t n, bool parallel, F &&f) {
  using Fn = std::remove_reference_t<F>;
  if (n <= 0) return;
  if (!parallel || n == 1) {
    f(int64_t{0}, n);
    return;
  }
  kiln_rt_parallel_for([](void *c, int64_t begin, int64_t end) { (*static_cast<Fn *>(c))(begin, end); },
                       const_cast<void *>(static_cast<const void *>(&f)), n, 1);
}

} // namespace kiln::backends::kernels
