//===- backends/kernels/entries.h - kiln's kernels behind one C ABI -*- C++ -*-===//
//
// Every kernel of kernels.h behind one signature,
//     void kiln_k_NAME(void *const *values, const int64_t *args)
// where values is a plan's array of buffer addresses by ValueId and args
// a record of int64s made once per plan (backends/common/kernel_steps.cpp):
// value ids (-1 for an absent optional operand), extents, flags, and float
// attributes as the bits of a double. Both CPU backends call the same
// entries with the same records: the oneDNN backend from a plan step (the
// entries built by GCC into kiln), the LLVM backend from its generated code
// with the record as a constant of the module and the entries linked in as
// LLVM bitcode (built by clang from these sources), so that O3 folds the
// record into the kernel: its extents become constants of the loops.
// Each entry's record layout is written at its definition (entries.cpp).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>

namespace kiln::backends::kernels {
using KernelEntry = void (*)(void *const *values, const int64_t *args);
} // namespace kiln::backends::kernels

// The list of entries, once: X(name).
#define KILN_KERNEL_ENTRIES(X)                                                                                        \
  X(embedding)                                                                                                        \
  X(embedding_grad)                                                                                                   \
  X(reduce)                                                                                                           \
  X(max)                                                                                                              \
  X(masked_softmax)                                                                                                   \
  X(normalize_grad)                                                                                                   \
  X(column_sums)                                                                                                      \
  X(dropout)                                                                                                          \
  X(recurrent)                                                                                                        \
  X(adam_moment)                                                                                                      \
  X(adam_update)                                                                                                      \
  X(adam_step)                                                                                                        \
  X(adam_rows)                                                                                                        \
  X(attention)                                                                                                        \
  X(additive_attention)                                                                                               \
  X(elementwise)

extern "C" {
#define KILN_DECLARE_ENTRY(name) void kiln_k_##name(void *const *values, const int64_t *args);
KILN_KERNEL_ENTRIES(KILN_DECLARE_ENTRY)
#undef KILN_DECLARE_ENTRY
/// matmul, matmul_bias and weight_grad as oneDNN matmul primitives
/// (backends/kernels/gemm.cpp): an entry of the same ABI that is not in the
/// bitcode, called by name from generated code.
void kiln_k_matmul(void *const *values, const int64_t *args);
}
