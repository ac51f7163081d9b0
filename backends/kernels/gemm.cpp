//===- backends/kernels/gemm.cpp - GEMMs as oneDNN matmuls behind kiln's ABI -===//
//
// kiln_k_matmul: matmul, matmul_bias (bias and activation applied as oneDNN
// writes each output block) and weight_grad, as oneDNN matmul primitives
// behind the same C ABI as kiln's own kernels (entries.h). A call site's
// record is constant, so the primitive it describes is made on its first
// call and kept in a table keyed by the record's bytes and the OpenMP
// thread count (oneDNN picks its blocking for the threads it will run on);
// later calls only point the primitive's memory at this run's buffers.
// Keying by content rather than by the record's address keeps a primitive
// right when a plan's code is unloaded and another one's record lands at
// the same address.
//
// Not part of the kernels' LLVM bitcode (oneDNN is a C++ library, not
// source of kiln's): the LLVM backend's generated code calls it by name,
// and an exported model links it from its runtime archive.
//
//===----------------------------------------------------------------------===//
#include "backends/kernels/entries.h"

#include <dnnl.hpp>
#include <memory>
#include <mutex>
#include <omp.h>
#include <string>
#include <string_view>
#include <unordered_map>

namespace {

using dnnl::memory;
using Dims = memory::dims;

/// One primitive and its memory objects (the handles are reset per call,
/// under the entry's lock: two executables of one graph may run at once).
struct Gemm {
  std::mutex lock;
  dnnl::matmul primitive;
  memory a, w, bias, out;
};

dnnl::engine &engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

memory::desc descOf(const int64_t *dims, const int64_t *strides, int64_t rank) {
  Dims d(dims + (3 - rank), dims + 3), s(strides + (3 - rank), strides + 3);
  return memory::desc(d, memory::data_type::f32, s);
}

std::unique_ptr<Gemm> makeGemm(const int64_t *r) {
  int64_t rank = r[6];
  memory::desc mdA = descOf(r + 7, r + 10, rank), mdW = descOf(r + 13, r + 16, rank);
  Dims out(r + 19 + (3 - rank), r + 22), outStrides(out.size());
  int64_t step = 1;
  for (size_t d = out.size(); d-- > 0;) outStrides[d] = step, step *= out[d];
  memory::desc mdOut(out, memory::data_type::f32, outStrides);
  auto g = std::make_unique<Gemm>();
  dnnl::engine &e = engine();
  if (r[4] < 0) {
    g->primitive = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(mdA, mdW, mdOut), e));
  } else {
    Dims db(out.size(), 1), sb(out.size(), 1);
    db[out.size() - 1] = out[out.size() - 1]; // [.., 1, N]
    memory::desc mdB(db, memory::data_type::f32, sb);
    dnnl::primitive_attr attr;
    if (r[1] != 0) {
      dnnl::post_ops ops;
      dnnl::algorithm alg = r[1] == 1 ? dnnl::algorithm::eltwise_relu
                            : r[1] == 2 ? dnnl::algorithm::eltwise_tanh
                                        : dnnl::algorithm::eltwise_logistic;
      ops.append_eltwise(1.0f, alg, 0.0f, 0.0f);
      attr.set_post_ops(ops);
    }
    g->primitive = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(mdA, mdW, mdB, mdOut), attr, e));
    g->bias = memory(mdB, e, DNNL_MEMORY_NONE);
  }
  g->a = memory(mdA, e, DNNL_MEMORY_NONE);
  g->w = memory(mdW, e, DNNL_MEMORY_NONE);
  g->out = memory(mdOut, e, DNNL_MEMORY_NONE);
  return g;
}

constexpr int64_t kRecordSize = 22;

Gemm &gemmFor(const int64_t *r) {
  static std::mutex tableLock;
  static std::unordered_map<std::string, std::unique_ptr<Gemm>> table;
  std::string key(reinterpret_cast<const char *>(r), kRecordSize * sizeof(int64_t));
  int threads = omp_get_max_threads();
  key.append(reinterpret_cast<const char *>(&threads), sizeof threads);
  std::lock_guard<std::mutex> hold(tableLock);
  auto it = table.find(key);
  if (it == table.end()) it = table.emplace(std::move(key), makeGemm(r)).first;
  return *it->second;
}

} // namespace

/// Record (22 int64s): kind (0 matmul, 1 matmul_bias, 2 weight_grad: for
/// labels only), activation (0 none, 1 relu, 2 tanh, 3 sigmoid), v:a, v:w,
/// v:bias (-1 without), v:out, rank (2 or 3), a's dims[3] and strides[3],
/// w's dims[3] and strides[3], out's dims[3] (dense); a rank-2 call uses
/// the last two of each triple. The bias is [.., 1, N], dense.
extern "C" void kiln_k_matmul(void *const *values, const int64_t *r) {
  Gemm &g = gemmFor(r);
  std::lock_guard<std::mutex> hold(g.lock);
  g.a.set_data_handle(values[r[2]]);
  g.w.set_data_handle(values[r[3]]);
  g.out.set_data_handle(values[r[5]]);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, g.a}, {DNNL_ARG_WEIGHTS, g.w}, {DNNL_ARG_DST, g.out}};
  if (r[4] >= 0) {
    g.bias.set_data_handle(values[r[4]]);
    args.emplace(DNNL_ARG_BIAS, g.bias);
  }
  thread_local dnnl::stream stream(engine());
  g.primitive.execute(stream, args);
  stream.wait();
}
