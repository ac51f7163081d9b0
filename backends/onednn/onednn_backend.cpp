//===- backends/onednn/onednn_backend.cpp - oneDNN CPU backend ------------===//
//
// Compilation of a plan, once per symbol bindings:
//  1. Concrete extents of every value. Fusion is not done here: the passes
//     (passes/fuse_*.cpp) made fused ops, each lowered as one step below
//     (matmul_bias as a matmul primitive with a bias and an eltwise
//     post-op, weight_grad as one 2-D matmul, attention and its gradient as
//     kiln kernels), so the memory plan is the plan that runs.
//  2. Memory: passes::planMemory lays every intermediate out in one arena,
//     with in-place results for the eltwise and binary primitives that
//     support it (dst may equal src / src0).
//  3. One step per node: a oneDNN primitive with its memory objects created
//     here, or the reference kernel on views of the arena. Inputs and
//     parameters stay in the caller's tensors; their addresses are set on
//     the memory objects at every run.
// Running is then: bind pointers, execute the steps in order, copy outputs.
//
// oneDNN 2.6 API: `X::desc d(...); X::primitive_desc pd(d, engine);`.
//
//===----------------------------------------------------------------------===//
#include "backends/onednn/onednn_backend.h"

#include "backends/onednn/kernels.h"
#include "backends/reference/interpreter.h"
#include "ir/elementwise.h"
#include "passes/flops.h"
#include "passes/memory_plan.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <dnnl.hpp>
#include <fmt/format.h>
#include <functional>
#include <map>
#include <omp.h>
#include <optional>
#include <sys/mman.h>
#include <unordered_map>

namespace kiln::backends::onednn {

namespace {

using dnnl::memory;
using ir::DType;
using ir::Node;
using ir::OpKind;
using ir::ValueId;
using runtime::Tensor;
using Dims = memory::dims;

/// Arena memory aligned for AVX-512. Its own mapping, not the heap's: the
/// kiln driver keeps large heap blocks from being returned to the system
/// (fresh pages fault in slowly on these VMs), so an arena freed when a
/// longer batch needs a larger one would stay in the process for good.
struct AlignedBuffer {
  void *data = nullptr;
  size_t mapped = 0;
  explicit AlignedBuffer(size_t bytes) {
    if (!bytes) return;
    mapped = (bytes + 4095) / 4096 * 4096;
    void *p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data = p;
  }
  ~AlignedBuffer() {
    if (data) munmap(data, mapped);
  }
  AlignedBuffer(const AlignedBuffer &) = delete;
  AlignedBuffer &operator=(const AlignedBuffer &) = delete;
};

memory::data_type dnnlType(DType t) {
  switch (t) {
  case DType::F32: return memory::data_type::f32;
  case DType::I32: return memory::data_type::s32;
  case DType::Bool: return memory::data_type::u8;
  }
  return memory::data_type::f32;
}

Dims denseStrides(const Dims &d) {
  Dims s(d.size());
  int64_t step = 1;
  for (size_t i = d.size(); i-- > 0;) {
    s[i] = step;
    step *= d[i];
  }
  return s;
}

memory::desc dense(const std::vector<int64_t> &extents, DType t = DType::F32) {
  Dims d = extents.empty() ? Dims{1} : Dims(extents.begin(), extents.end());
  return memory::desc(d, dnnlType(t), denseStrides(d));
}

/// `small` aligned to the rank of `full` with leading 1s (numpy broadcasting).
Dims alignRank(const std::vector<int64_t> &small, size_t rank) {
  Dims d(rank, 1);
  std::copy(small.begin(), small.end(), d.begin() + (rank - small.size()));
  return d;
}

int64_t product(const std::vector<int64_t> &e, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= e[i];
  return p;
}

class OnednnExecutable;

/// Everything built for one set of symbol bindings.
struct Plan {
  std::vector<std::vector<int64_t>> extents; ///< by ValueId
  passes::MemoryPlan memory;
  /// The executable's shared arena this plan's addresses were computed for.
  const void *boundArena = nullptr;
  uint64_t lastUse = 0; ///< for the bounded plan cache
  std::vector<void *> ptr; ///< by ValueId: where the value lives this run
  std::vector<void *> home; ///< by ValueId: its place in the arena (null outside it)
  /// By ValueId: an output that runInto may place in the caller's tensor:
  /// a node result of its own buffer (no view or in-place result of it or
  /// under it), named by one output only.
  std::vector<bool> bindable;
  struct Step {
    ir::NodeId node;
    std::string label;
    std::function<void()> run;
  };
  std::vector<Step> steps;
  std::vector<double> seconds; ///< per step, when profiling
  std::vector<int64_t> calls;
  /// OpenMP threads the plan's primitives are created and run with (oneDNN
  /// reads the count at both), and kiln's kernels run on: --threads, or
  /// OpenMP's default when it is 0, except that a plan this small (batch-1
  /// inference) runs on one thread: the cost of waking a second one
  /// exceeds the work it would take over.
  int threads = 1;
};

/// Below this many FLOPs (passes::graphFlops: 2·M·N·K per matmul, a few per element elsewhere) a
/// plan runs on one thread; measured on the example models: 4 MFLOP
/// (additive, B=1) is 15% faster on one thread, 21 MFLOP (dot-product, B=1)
/// 15% slower.
constexpr double kSingleThreadFlops = 8e6;

/// Sets OpenMP's thread count for a scope (oneDNN reads it at primitive
/// creation and execution), restoring the previous value after.
class OmpThreads {
public:
  explicit OmpThreads(int threads) : previous_(omp_get_max_threads()) {
    if (threads != previous_) omp_set_num_threads(threads);
  }
  ~OmpThreads() {
    if (omp_get_max_threads() != previous_) omp_set_num_threads(previous_);
  }
  OmpThreads(const OmpThreads &) = delete;
  OmpThreads &operator=(const OmpThreads &) = delete;

private:
  int previous_;
};

/// The size of the team an OpenMP parallel region gets in the current
/// scope: what the plan's primitives and kernels will run on, measured
/// rather than assumed (OMP_THREAD_LIMIT or OMP_DYNAMIC may give fewer than
/// asked for).
int ompTeamSize() {
  int team = 1;
#pragma omp parallel
  {
#pragma omp single
    team = omp_get_num_threads();
  }
  return team;
}

class OnednnExecutable : public runtime::Executable {
public:
  OnednnExecutable(const ir::Graph &g, const runtime::CompileOptions &o)
      : graph_(g), engine_(dnnl::engine::kind::cpu, 0), stream_(engine_), threads_(o.threads) {}

  const ir::Graph &graph() const override { return graph_; }
  void setProfiling(bool on) override { profiling_ = on; }
  std::vector<runtime::NodeTiming> profile() const override;
  int64_t workspaceBytes() const override { return lastPlan_ ? lastPlan_->memory.arenaBytes : 0; }
  int threads() const override { return lastPlan_ ? lastPlan_->threads : 0; }

  runtime::TensorMap run(const runtime::TensorMap &inputs, const runtime::TensorMap &params) override {
    runtime::TensorMap out;
    execute(inputs, params, out, /*bindGiven=*/false);
    return out;
  }

  void runInto(const runtime::TensorMap &inputs, const runtime::TensorMap &params,
               runtime::TensorMap &outputs) override {
    execute(inputs, params, outputs, /*bindGiven=*/true);
  }

private:
  /// Runs the plan; with bindGiven, an output whose tensor in `out` fits
  /// (and whose value no view or in-place result shares) is computed
  /// straight into that tensor, the others are copied out of the arena.
  void execute(const runtime::TensorMap &inputs, const runtime::TensorMap &params, runtime::TensorMap &out,
               bool bindGiven) {
    std::vector<std::vector<int64_t>> inputExtents;
    std::vector<const Tensor *> given(graph_.numValues(), nullptr);
    auto lookup = [&](const runtime::TensorMap &m, ValueId v, const char *what) {
      const ir::ValueInfo &info = graph_.value(v);
      auto it = m.find(info.name);
      if (it == m.end()) throw Error(fmt::format("missing {} '{}' of type {}", what, info.name, info.type.str()));
      if (it->second.dtype() != info.type.dtype || it->second.rank() != info.type.rank())
        throw Error(fmt::format("{} '{}' expects {} but was given {}", what, info.name, info.type.str(),
                                it->second.typeStr()));
      given[v] = &it->second;
    };
    for (ValueId v : graph_.inputs()) {
      lookup(inputs, v, "input");
      inputExtents.push_back(given[v]->shape());
    }
    ir::SymbolBindings bindings = graph_.bindSymbols(inputExtents);
    Plan &plan = planFor(bindings);
    bindArena(plan);
    for (ValueId v : graph_.params()) {
      lookup(params, v, "parameter");
      if (given[v]->shape() != plan.extents[v])
        throw Error(fmt::format("parameter '{}' expects {} but was given {}", graph_.value(v).name,
                                graph_.type(v).str(), given[v]->typeStr()));
    }
    checkIndices(plan, given);
    for (ValueId v : graph_.inputs()) plan.ptr[v] = const_cast<std::byte *>(given[v]->raw());
    for (ValueId v : graph_.params()) plan.ptr[v] = const_cast<std::byte *>(given[v]->raw());
    // Outputs live in the arena unless this run binds them to given tensors.
    std::vector<bool> direct(graph_.outputs().size(), false);
    for (size_t k = 0; k < graph_.outputs().size(); ++k) {
      ValueId v = graph_.outputs()[k].value;
      if (!plan.bindable[v]) continue;
      plan.ptr[v] = plan.home[v];
      if (!bindGiven) continue;
      auto it = out.find(graph_.outputs()[k].name);
      if (it == out.end() || it->second.dtype() != graph_.type(v).dtype || it->second.shape() != plan.extents[v] ||
          it->second.byteSize() == 0)
        continue;
      plan.ptr[v] = it->second.raw();
      direct[k] = true;
    }
    // Views and in-place results follow their root's address, which for a
    // view of an input or parameter changes every run.
    for (size_t v = 0; v < plan.ptr.size(); ++v) {
      ValueId root = rootOf(plan, static_cast<ValueId>(v));
      if (root != static_cast<ValueId>(v) && !isExternal(root)) continue;
      if (root != static_cast<ValueId>(v)) plan.ptr[v] = plan.ptr[root];
    }

    OmpThreads threads(plan.threads);
    for (size_t i = 0; i < plan.steps.size(); ++i) {
      if (!profiling_) {
        plan.steps[i].run();
        continue;
      }
      auto t0 = std::chrono::steady_clock::now();
      plan.steps[i].run();
      stream_.wait();
      plan.seconds[i] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++plan.calls[i];
    }
    stream_.wait();

    for (size_t k = 0; k < graph_.outputs().size(); ++k) {
      if (direct[k]) continue;
      const ir::Output &o = graph_.outputs()[k];
      auto it = out.find(o.name);
      bool reuse = bindGiven && it != out.end() && it->second.dtype() == graph_.type(o.value).dtype &&
                   it->second.shape() == plan.extents[o.value] && it->second.byteSize() > 0;
      if (!reuse) it = out.insert_or_assign(o.name, Tensor(graph_.type(o.value).dtype, plan.extents[o.value])).first;
      if (it->second.byteSize()) std::memcpy(it->second.raw(), plan.ptr[o.value], it->second.byteSize());
    }
    lastPlan_ = &plan;
  }

  bool isExternal(ValueId v) const { return graph_.value(v).kind != ir::ValueKind::Node; }
  ValueId rootOf(const Plan &p, ValueId v) const {
    while (p.memory.values[v].aliasOf >= 0 && p.memory.values[v].aliasOf != v) v = p.memory.values[v].aliasOf;
    return v;
  }

  /// Run-time data a kernel would otherwise trip over: ids and labels out of
  /// range are user errors, found before any step runs.
  void checkIndices(const Plan &plan, const std::vector<const Tensor *> &given) const {
    for (const Node &n : graph_.nodes()) {
      if (n.op != OpKind::Embedding && n.op != OpKind::CrossEntropy) continue;
      ValueId idx = n.operands[1];
      if (!given[idx]) continue; // computed ids are checked by the reference kernel path
      int64_t bound = n.op == OpKind::Embedding ? plan.extents[n.operands[0]][0] : plan.extents[n.operands[0]][1];
      auto ids = given[idx]->i32();
      for (size_t i = 0; i < ids.size(); ++i)
        if (ids[i] < 0 || ids[i] >= bound)
          throw Error(fmt::format("{}: {} {} at position {} is outside [0, {})", ir::opName(n.op),
                                  n.op == OpKind::Embedding ? "id" : "label", ids[i], i, bound),
                      n.locs.empty() ? SourceLoc{} : n.locs.front());
    }
  }

  /// The plan for these symbol bindings, built on first use. At most
  /// kMaxPlans are kept, the least recently used dropped first: a training
  /// run over texts of many lengths would otherwise keep one plan (and its
  /// primitives) per length for good.
  Plan &planFor(const ir::SymbolBindings &b) {
    auto it = plans_.find(b);
    if (it == plans_.end()) {
      if (plans_.size() >= kMaxPlans) {
        auto oldest = plans_.begin();
        for (auto p = plans_.begin(); p != plans_.end(); ++p)
          if (p->second->lastUse < oldest->second->lastUse) oldest = p;
        if (lastPlan_ == oldest->second.get()) lastPlan_ = nullptr;
        plans_.erase(oldest);
      }
      auto plan = std::make_unique<Plan>();
      build(*plan, b);
      it = plans_.emplace(b, std::move(plan)).first;
    }
    it->second->lastUse = ++useClock_;
    return *it->second;
  }

  /// Every plan runs in one arena, grown to the largest plan's size: the
  /// plans of one executable never run at the same time. A plan's addresses
  /// are recomputed when the arena it was bound to has moved.
  void bindArena(Plan &p) {
    size_t bytes = static_cast<size_t>(p.memory.arenaBytes);
    if (!arena_ || bytes > arenaBytes_) {
      // A quarter more than asked, so that a run over slowly growing
      // lengths does not remap (and fault in) its arena at every step.
      if (arena_) bytes = std::max(bytes, arenaBytes_ + arenaBytes_ / 4);
      arena_.reset(); // free first: the old and new arena need not coexist
      arena_ = std::make_unique<AlignedBuffer>(bytes);
      arenaBytes_ = bytes;
    }
    if (p.boundArena == arena_->data && arena_->data) return;
    size_t n = p.ptr.size();
    for (size_t v = 0; v < n; ++v) {
      const passes::BufferPlan &bp = p.memory.values[v];
      if (bp.offset >= 0) p.ptr[v] = static_cast<std::byte *>(arena_->data) + bp.offset;
    }
    for (size_t v = 0; v < n; ++v) {
      ValueId root = rootOf(p, static_cast<ValueId>(v));
      if (root != static_cast<ValueId>(v) && !isExternal(root)) p.ptr[v] = p.ptr[root];
    }
    p.home = p.ptr;
    p.boundArena = arena_->data;
  }

  void build(Plan &p, const ir::SymbolBindings &b);
  bool lowerNode(Plan &p, size_t i);

  /// A memory object for value v whose address is looked up at run time,
  /// or (value -1) one that owns its buffer: a primitive's weights in the
  /// blocked layout it wants, reordered from the graph's.
  struct Bound {
    memory mem;
    ValueId value;
  };
  void addPrimitive(Plan &p, size_t node, std::string label, dnnl::primitive prim, std::vector<std::pair<int, Bound>> args) {
    Plan *plan = &p;
    std::vector<std::pair<int, Bound>> bound = std::move(args);
    // Memory objects are shared handles: the map built here sees the
    // addresses set on them at every run.
    std::unordered_map<int, memory> argMap;
    for (auto &[arg, bm] : bound) argMap.emplace(arg, bm.mem);
    p.steps.push_back({static_cast<ir::NodeId>(node), std::move(label), [this, plan, prim, bound, argMap]() mutable {
                         for (auto &[arg, bm] : bound)
                           if (bm.value >= 0) bm.mem.set_data_handle(plan->ptr[bm.value]);
                         prim.execute(stream_, argMap);
                       }});
  }
  Bound bind(const memory::desc &md, ValueId v) { return {memory(md, engine_, DNNL_MEMORY_NONE), v}; }
  /// A step running one of kernels.h; `body` reads addresses from the plan.
  void addKernel(Plan &p, size_t node, const std::string &label, std::function<void(Plan &)> body) {
    Plan *plan = &p;
    p.steps.push_back({static_cast<ir::NodeId>(node), label + " (kiln kernel)", [plan, body] { body(*plan); }});
  }
  bool lowerCustom(Plan &p, size_t i);
  bool lowerConv(Plan &p, size_t i);

  ir::Graph graph_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  int threads_;
  bool profiling_ = false;
  static constexpr size_t kMaxPlans = 16;
  std::map<ir::SymbolBindings, std::unique_ptr<Plan>> plans_;
  uint64_t useClock_ = 0;
  std::unique_ptr<AlignedBuffer> arena_;
  size_t arenaBytes_ = 0;
  Plan *lastPlan_ = nullptr;
};

/// Ops whose oneDNN primitive may write its result over operand 0.
bool eltwiseLike(OpKind op) {
  switch (op) {
  case OpKind::Tanh:
  case OpKind::Relu:
  case OpKind::Exp:
  case OpKind::Log:
  case OpKind::Sqrt:
  case OpKind::Sigmoid:
  case OpKind::Neg:
  case OpKind::Add:
  case OpKind::Sub:
  case OpKind::Mul:
  case OpKind::Div: return true;
  default: return false;
  }
}

std::optional<dnnl::algorithm> eltwiseAlgorithm(OpKind op, float &alpha) {
  alpha = 0;
  switch (op) {
  case OpKind::Tanh: return dnnl::algorithm::eltwise_tanh;
  case OpKind::Relu: return dnnl::algorithm::eltwise_relu;
  case OpKind::Exp: return dnnl::algorithm::eltwise_exp;
  case OpKind::Log: return dnnl::algorithm::eltwise_log;
  case OpKind::Sqrt: return dnnl::algorithm::eltwise_sqrt;
  case OpKind::Sigmoid: return dnnl::algorithm::eltwise_logistic;
  case OpKind::Neg: alpha = -1; return dnnl::algorithm::eltwise_linear;
  default: return std::nullopt;
  }
}

std::optional<dnnl::algorithm> binaryAlgorithm(OpKind op) {
  switch (op) {
  case OpKind::Add: return dnnl::algorithm::binary_add;
  case OpKind::Sub: return dnnl::algorithm::binary_sub;
  case OpKind::Mul: return dnnl::algorithm::binary_mul;
  case OpKind::Div: return dnnl::algorithm::binary_div;
  default: return std::nullopt;
  }
}

void OnednnExecutable::build(Plan &p, const ir::SymbolBindings &b) {
  const auto &nodes = graph_.nodes();
  size_t n = graph_.numValues();
  p.extents.resize(n);
  for (size_t v = 0; v < n; ++v) p.extents[v] = *ir::concreteShape(graph_.type(static_cast<ValueId>(v)).shape, b);

  passes::PlanOptions opts;
  opts.inPlace = [&](const Node &node, size_t operand) {
    if (operand != 0 || !eltwiseLike(node.op) || graph_.type(node.operands[0]).dtype != DType::F32) return false;
    return p.extents[node.operands[0]] == p.extents[node.result];
  };
  double work = static_cast<double>(passes::graphFlops(graph_, b));
  int wanted = work < kSingleThreadFlops ? 1 : threads_ > 0 ? threads_ : omp_get_max_threads();
  OmpThreads threads(wanted);
  p.threads = ompTeamSize();
  p.memory = passes::planMemory(graph_, b, opts);
  // Addresses come from the shared arena when the plan runs (bindArena).
  p.ptr.assign(n, nullptr);
  p.home = p.ptr;
  p.bindable.assign(n, false);
  std::vector<int> outputUses(n, 0), aliasUses(n, 0);
  for (const ir::Output &o : graph_.outputs()) ++outputUses[o.value];
  for (size_t v = 0; v < n; ++v) {
    ValueId root = rootOf(p, static_cast<ValueId>(v));
    if (root != static_cast<ValueId>(v)) ++aliasUses[root];
  }
  for (const ir::Output &o : graph_.outputs()) {
    ValueId v = o.value;
    p.bindable[v] = !isExternal(v) && p.memory.values[v].offset >= 0 && rootOf(p, v) == v && aliasUses[v] == 0 &&
                    outputUses[v] == 1;
  }

  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node &node = nodes[i];
    // A reshape that the planner made a view needs no work.
    if (node.op == OpKind::Reshape && rootOf(p, node.result) == rootOf(p, node.operands[0])) continue;
    // oneDNN refuses some shapes (e.g. a "reduction" that reduces nothing);
    // those nodes run the reference kernel like unsupported ops do.
    bool lowered = false;
    size_t stepsBefore = p.steps.size();
    try {
      lowered = lowerCustom(p, i) || lowerNode(p, i);
    } catch (const dnnl::error &) {
      p.steps.resize(stepsBefore);
    }
    if (lowered) continue;
    // Fallback: the reference kernel on views of this run's buffers.
    Plan *plan = &p;
    // One thread: the big ops have kernels of their own, and std::threads
    // here would fight oneDNN's OpenMP workers for the two cores.
    int threads = 1;
    p.steps.push_back({static_cast<ir::NodeId>(i), std::string(ir::opName(node.op)) + " (reference)",
                       [this, plan, i, threads]() {
                         const Node &nd = graph_.nodes()[i];
                         std::vector<Tensor> views;
                         views.reserve(nd.operands.size());
                         for (ValueId v : nd.operands)
                           views.push_back(Tensor::view(graph_.type(v).dtype, plan->extents[v], plan->ptr[v]));
                         std::vector<const Tensor *> ops;
                         for (const Tensor &t : views) ops.push_back(&t);
                         std::vector<Tensor> outs;
                         std::vector<Tensor *> results;
                         outs.reserve(nd.numResults());
                         for (ValueId r : nd.results()) {
                           outs.push_back(Tensor::view(graph_.type(r).dtype, plan->extents[r], plan->ptr[r]));
                           if (outs.back().byteSize() && reference::needsZeroedResult(nd.op))
                             std::memset(outs.back().raw(), 0, outs.back().byteSize());
                           results.push_back(&outs.back());
                         }
                         reference::executeNode(nd, ops, results, threads);
                       }});
  }
  p.seconds.assign(p.steps.size(), 0.0);
  p.calls.assign(p.steps.size(), 0);
}

bool OnednnExecutable::lowerNode(Plan &p, size_t i) {
  const Node &node = graph_.nodes()[i];
  auto ext = [&](ValueId v) -> const std::vector<int64_t> & { return p.extents[v]; };
  auto f32 = [&](ValueId v) { return graph_.type(v).dtype == DType::F32; };
  const auto &out = ext(node.result);
  if (ir::numElements(out) == 0) return false; // oneDNN rejects empty tensors; the reference handles them

  if (float alpha; auto alg = eltwiseAlgorithm(node.op, alpha)) {
    memory::desc md = dense({ir::numElements(out)});
    dnnl::eltwise_forward::desc d(dnnl::prop_kind::forward_inference, *alg, md, alpha, 0.f);
    dnnl::eltwise_forward::primitive_desc pd(d, engine_);
    addPrimitive(p, i, std::string(ir::opName(node.op)) + " (onednn eltwise)", dnnl::eltwise_forward(pd),
                 {{DNNL_ARG_SRC, bind(md, node.operands[0])}, {DNNL_ARG_DST, bind(md, node.result)}});
    return true;
  }

  if (node.op == OpKind::TanhGrad || node.op == OpKind::ReluGrad || node.op == OpKind::SigmoidGrad) {
    memory::desc md = dense({ir::numElements(out)});
    dnnl::algorithm alg = node.op == OpKind::TanhGrad    ? dnnl::algorithm::eltwise_tanh_use_dst_for_bwd
                          : node.op == OpKind::ReluGrad ? dnnl::algorithm::eltwise_relu
                                                        : dnnl::algorithm::eltwise_logistic_use_dst_for_bwd;
    dnnl::eltwise_forward::primitive_desc hint(
        dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training, alg, md, 0.f, 0.f), engine_);
    dnnl::eltwise_backward::primitive_desc pd(dnnl::eltwise_backward::desc(alg, md, md, 0.f, 0.f), engine_, hint);
    int dataArg = node.op == OpKind::ReluGrad ? DNNL_ARG_SRC : DNNL_ARG_DST;
    addPrimitive(p, i, std::string(ir::opName(node.op)) + " (onednn eltwise)", dnnl::eltwise_backward(pd),
                 {{dataArg, bind(md, node.operands[0])},
                  {DNNL_ARG_DIFF_DST, bind(md, node.operands[1])},
                  {DNNL_ARG_DIFF_SRC, bind(md, node.result)}});
    return true;
  }

  if (auto alg = binaryAlgorithm(node.op); alg && f32(node.result)) {
    ValueId a = node.operands[0], c = node.operands[1];
    // oneDNN broadcasts only src1; commutative ops can swap their operands.
    if (ext(a) != out && (node.op == OpKind::Add || node.op == OpKind::Mul) && ext(c) == out) std::swap(a, c);
    if (ext(a) != out) return false;
    size_t rank = std::max<size_t>(out.size(), 1);
    memory::desc mdOut = dense(out);
    Dims cd = alignRank(ext(c), rank);
    if (out.empty()) cd = {1};
    memory::desc mdC(cd, memory::data_type::f32, denseStrides(cd));
    dnnl::binary::primitive_desc pd(dnnl::binary::desc(*alg, mdOut, mdC, mdOut), engine_);
    addPrimitive(p, i, std::string(ir::opName(node.op)) + " (onednn binary)", dnnl::binary(pd),
                 {{DNNL_ARG_SRC_0, bind(mdOut, a)}, {DNNL_ARG_SRC_1, bind(mdC, c)}, {DNNL_ARG_DST, bind(mdOut, node.result)}});
    return true;
  }

  if (node.op == OpKind::MatMul || node.op == OpKind::MatMulBias) {
    ValueId a = node.operands[0], w = node.operands[1];
    bool ta = ir::attrBool(node.op, node.attrs, "transpose_a"), tb = ir::attrBool(node.op, node.attrs, "transpose_b");
    const auto &ea = ext(a), &ew = ext(w);
    size_t ra = ea.size(), rw = ew.size(), ro = out.size();
    int64_t m = out[ro - 2], nn = out[ro - 1], k = ta ? ea[ra - 2] : ea[ra - 1];
    // Each operand's batch dims fold into one: the full batch, or 1 (broadcast).
    int64_t batch = product(out, 0, ro - 2);
    int64_t ba = product(ea, 0, ra - 2), bw = product(ew, 0, rw - 2);
    if ((ba != batch && ba != 1) || (bw != batch && bw != 1)) return false;
    if (k == 0) return false; // an empty contraction: the reference writes the zeros
    // A rank-2 weight under a batched lhs without transpose: fold the batch into M.
    bool foldRows = bw == 1 && !ta && ba == batch;
    Dims da, dw, dout, sa, sw;
    if (foldRows) {
      int64_t rows = batch * m;
      da = {rows, k};
      sa = {k, 1};
      dw = {k, nn};
      sw = tb ? Dims{1, k} : Dims{nn, 1};
      dout = {rows, nn};
    } else {
      da = {ba, m, k};
      sa = ta ? Dims{m * k, 1, m} : Dims{m * k, k, 1};
      dw = {bw, k, nn};
      sw = tb ? Dims{k * nn, 1, k} : Dims{k * nn, nn, 1};
      dout = {batch, m, nn};
    }
    memory::desc mdA(da, memory::data_type::f32, sa), mdW(dw, memory::data_type::f32, sw);
    memory::desc mdOut(dout, memory::data_type::f32, denseStrides(dout));
    std::vector<std::pair<int, Bound>> args{{DNNL_ARG_SRC, bind(mdA, a)}, {DNNL_ARG_WEIGHTS, bind(mdW, w)}};
    if (node.op == OpKind::MatMul) {
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(mdA, mdW, mdOut), engine_);
      args.push_back({DNNL_ARG_DST, bind(mdOut, node.result)});
      addPrimitive(p, i, "matmul (onednn)", dnnl::matmul(pd), std::move(args));
      return true;
    }
    // matmul_bias: the bias is added, and the activation applied, as the
    // primitive writes each output block (a bias argument and an eltwise
    // post-op), so neither costs a pass over memory.
    Dims db(dout.size(), 1);
    db.back() = nn;
    memory::desc mdB(db, memory::data_type::f32, denseStrides(db));
    std::string activation = ir::attrString(node.op, node.attrs, "activation");
    dnnl::primitive_attr attr;
    if (activation != "none") {
      dnnl::post_ops ops;
      dnnl::algorithm alg = activation == "relu"   ? dnnl::algorithm::eltwise_relu
                            : activation == "tanh" ? dnnl::algorithm::eltwise_tanh
                                                   : dnnl::algorithm::eltwise_logistic;
      ops.append_eltwise(1.0f, alg, 0.0f, 0.0f);
      attr.set_post_ops(ops);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(mdA, mdW, mdB, mdOut), attr, engine_);
    args.push_back({DNNL_ARG_BIAS, bind(mdB, node.operands[2])});
    args.push_back({DNNL_ARG_DST, bind(mdOut, node.result)});
    addPrimitive(p, i, activation == "none" ? "matmul_bias (onednn)" : "matmul_bias+" + activation + " (onednn)",
                 dnnl::matmul(pd), std::move(args));
    return true;
  }

  bool masked = node.operands.size() > 1; // masked variants have kiln kernels or the reference
  if ((node.op == OpKind::Softmax || node.op == OpKind::LogSoftmax) && !masked) {
    memory::desc md = dense(out);
    int axis = static_cast<int>(ir::normalizeAxis(ir::axisAttr(node.attrs), out.size()));
    if (node.op == OpKind::Softmax) {
      dnnl::softmax_forward::primitive_desc pd(
          dnnl::softmax_forward::desc(dnnl::prop_kind::forward_training, md, axis), engine_);
      addPrimitive(p, i, "softmax (onednn)", dnnl::softmax_forward(pd),
                   {{DNNL_ARG_SRC, bind(md, node.operands[0])}, {DNNL_ARG_DST, bind(md, node.result)}});
    } else {
      dnnl::logsoftmax_forward::primitive_desc pd(
          dnnl::logsoftmax_forward::desc(dnnl::prop_kind::forward_training, md, axis), engine_);
      addPrimitive(p, i, "log_softmax (onednn)", dnnl::logsoftmax_forward(pd),
                   {{DNNL_ARG_SRC, bind(md, node.operands[0])}, {DNNL_ARG_DST, bind(md, node.result)}});
    }
    return true;
  }

  if (node.op == OpKind::SoftmaxGrad) {
    memory::desc md = dense(out);
    int axis = static_cast<int>(ir::normalizeAxis(ir::axisAttr(node.attrs), out.size()));
    dnnl::softmax_forward::primitive_desc hint(
        dnnl::softmax_forward::desc(dnnl::prop_kind::forward_training, md, axis), engine_);
    dnnl::softmax_backward::primitive_desc pd(dnnl::softmax_backward::desc(md, md, axis), engine_, hint);
    addPrimitive(p, i, "softmax_grad (onednn)", dnnl::softmax_backward(pd),
                 {{DNNL_ARG_DST, bind(md, node.operands[0])},
                  {DNNL_ARG_DIFF_DST, bind(md, node.operands[1])},
                  {DNNL_ARG_DIFF_SRC, bind(md, node.result)}});
    return true;
  }

  if ((node.op == OpKind::Sum || node.op == OpKind::Mean || node.op == OpKind::Max) && !masked) {
    const auto &ex = ext(node.operands[0]);
    size_t axis = static_cast<size_t>(ir::normalizeAxis(ir::axisAttr(node.attrs), ex.size()));
    Dims src(ex.begin(), ex.end()), dst = src;
    dst[axis] = 1;
    if (ex[axis] == 0) return false;
    dnnl::algorithm alg = node.op == OpKind::Sum    ? dnnl::algorithm::reduction_sum
                          : node.op == OpKind::Mean ? dnnl::algorithm::reduction_mean
                                                    : dnnl::algorithm::reduction_max;
    memory::desc mdS(src, memory::data_type::f32, denseStrides(src)), mdD(dst, memory::data_type::f32, denseStrides(dst));
    dnnl::reduction::primitive_desc pd(dnnl::reduction::desc(alg, mdS, mdD, 0.f, 0.f), engine_);
    addPrimitive(p, i, std::string(ir::opName(node.op)) + " (onednn reduction)", dnnl::reduction(pd),
                 {{DNNL_ARG_SRC, bind(mdS, node.operands[0])}, {DNNL_ARG_DST, bind(mdD, node.result)}});
    return true;
  }

  if (node.op == OpKind::SumTo) {
    const auto &ex = ext(node.operands[0]);
    Dims src(ex.begin(), ex.end()), dst = alignRank(out, ex.size());
    if (src.empty()) return false;
    memory::desc mdS(src, memory::data_type::f32, denseStrides(src)), mdD(dst, memory::data_type::f32, denseStrides(dst));
    dnnl::reduction::primitive_desc pd(dnnl::reduction::desc(dnnl::algorithm::reduction_sum, mdS, mdD, 0.f, 0.f), engine_);
    addPrimitive(p, i, "sum_to (onednn reduction)", dnnl::reduction(pd),
                 {{DNNL_ARG_SRC, bind(mdS, node.operands[0])}, {DNNL_ARG_DST, bind(mdD, node.result)}});
    return true;
  }

  if (node.op == OpKind::Transpose && f32(node.result)) {
    // A reorder from the operand read with permuted strides into dense dst.
    ir::Shape perm = ir::attrDims(node.attrs, "perm");
    Dims srcStrides = denseStrides(Dims(ext(node.operands[0]).begin(), ext(node.operands[0]).end()));
    Dims dims(out.begin(), out.end()), strides(perm.size());
    for (size_t d = 0; d < perm.size(); ++d) strides[d] = srcStrides[perm[d].value];
    memory::desc mdS(dims, memory::data_type::f32, strides), mdD(dims, memory::data_type::f32, denseStrides(dims));
    dnnl::reorder::primitive_desc pd(engine_, mdS, engine_, mdD);
    addPrimitive(p, i, "transpose (onednn reorder)", dnnl::reorder(pd),
                 {{DNNL_ARG_FROM, bind(mdS, node.operands[0])}, {DNNL_ARG_TO, bind(mdD, node.result)}});
    return true;
  }
  return false;
}

/// A reduction over `axis` of x with an optional mask, as [outer, len, inner]
/// with the mask one byte per (outer, len): the shape kernels::maskedReduce
/// takes. False when the mask broadcasts differently.
bool reduceView(const std::vector<int64_t> &x, const std::vector<int64_t> *mask, size_t axis, int64_t &outer,
                int64_t &len, int64_t &inner) {
  outer = product(x, 0, axis);
  len = x[axis];
  inner = product(x, axis + 1, x.size());
  if (!mask) return true;
  Dims m = alignRank(*mask, x.size());
  for (size_t d = 0; d < x.size(); ++d)
    if (m[d] != (d <= axis ? x[d] : 1)) return false;
  return true;
}

/// The kernel's number for an op of an elementwise body; nullopt for one
/// it does not implement.
std::optional<kernels::ElementwiseOp> elementwiseOp(OpKind op) {
  using E = kernels::ElementwiseOp;
  switch (op) {
  case OpKind::Add: return E::Add;
  case OpKind::Sub: return E::Sub;
  case OpKind::Mul: return E::Mul;
  case OpKind::Div: return E::Div;
  case OpKind::Neg: return E::Neg;
  case OpKind::Exp: return E::Exp;
  case OpKind::Log: return E::Log;
  case OpKind::Tanh: return E::Tanh;
  case OpKind::Relu: return E::Relu;
  case OpKind::Sigmoid: return E::Sigmoid;
  case OpKind::Sqrt: return E::Sqrt;
  case OpKind::Erf: return E::Erf;
  case OpKind::TanhGrad: return E::TanhGrad;
  case OpKind::SigmoidGrad: return E::SigmoidGrad;
  case OpKind::ReluGrad: return E::ReluGrad;
  default: return std::nullopt;
  }
}

bool OnednnExecutable::lowerCustom(Plan &p, size_t i) {
  const Node &node = graph_.nodes()[i];
  auto ext = [&](ValueId v) -> const std::vector<int64_t> & { return p.extents[v]; };
  auto fptr = [](Plan &pl, ValueId v) { return static_cast<float *>(pl.ptr[v]); };
  ValueId r = node.result;
  switch (node.op) {
  case OpKind::Embedding: {
    ValueId table = node.operands[0], ids = node.operands[1];
    if (!isExternal(ids)) return false; // computed ids: the reference kernel checks them
    int64_t n = ir::numElements(ext(ids)), width = ext(table)[1];
    addKernel(p, i, "embedding", [=](Plan &pl) {
      kernels::embedding(fptr(pl, table), static_cast<int32_t *>(pl.ptr[ids]), n, width, fptr(pl, r));
    });
    return true;
  }
  case OpKind::EmbeddingGrad: {
    ValueId ids = node.operands[0], dy = node.operands[1];
    if (!isExternal(ids)) return false;
    int64_t n = ir::numElements(ext(ids)), rows = ext(r)[0], width = ext(r)[1];
    addKernel(p, i, "embedding_grad", [=](Plan &pl) {
      kernels::embeddingGrad(static_cast<int32_t *>(pl.ptr[ids]), fptr(pl, dy), n, rows, width, fptr(pl, r));
    });
    return true;
  }
  case OpKind::Sum:
  case OpKind::Mean:
  case OpKind::SumGrad:
  case OpKind::MeanGrad: {
    bool grad = node.op == OpKind::SumGrad || node.op == OpKind::MeanGrad;
    bool mean = node.op == OpKind::Mean || node.op == OpKind::MeanGrad;
    const auto &x = grad ? ext(r) : ext(node.operands[0]);
    size_t axis = static_cast<size_t>(ir::normalizeAxis(ir::axisAttr(node.attrs), x.size()));
    bool masked = node.operands.size() == 2;
    ValueId maskValue = masked ? node.operands[1] : -1;
    int64_t outer, len, inner;
    if (!reduceView(x, masked ? &ext(maskValue) : nullptr, axis, outer, len, inner)) return false;
    ValueId src = node.operands[0];
    std::string label = ir::opName(node.op);
    addKernel(p, i, label, [=](Plan &pl) {
      const uint8_t *mask = masked ? static_cast<uint8_t *>(pl.ptr[maskValue]) : nullptr;
      if (grad) kernels::maskedReduceGrad(fptr(pl, src), mask, outer, len, inner, mean, fptr(pl, r));
      else kernels::maskedReduce(fptr(pl, src), mask, outer, len, inner, mean, fptr(pl, r));
    });
    return true;
  }
  case OpKind::Gru:
  case OpKind::GruGrad:
  case OpKind::Lstm:
  case OpKind::LstmGrad: {
    bool grad = node.op == OpKind::GruGrad || node.op == OpKind::LstmGrad;
    bool lstm = node.op == OpKind::Lstm || node.op == OpKind::LstmGrad;
    const auto &eh = ext(grad ? node.operands[1] : r);
    kernels::GruShape shape{eh[0], eh[1], eh[2], ir::attrBool(node.op, node.attrs, "reverse")};
    if (shape.batch == 0 || shape.steps == 0 || shape.hidden == 0) return false; // the reference writes the zeros
    size_t maskAt = grad ? 4 : 3;
    ValueId maskValue = node.operands.size() > maskAt ? node.operands[maskAt] : -1;
    std::vector<ValueId> o = node.operands, res = node.results();
    addKernel(p, i, ir::opName(node.op), [=](Plan &pl) {
      const uint8_t *mask = maskValue >= 0 ? static_cast<uint8_t *>(pl.ptr[maskValue]) : nullptr;
      auto backward = lstm ? kernels::lstmGrad : kernels::gruGrad;
      auto forward = lstm ? kernels::lstm : kernels::gru;
      if (grad)
        backward(shape, fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), fptr(pl, o[3]), mask, fptr(pl, res[0]),
                 fptr(pl, res[1]), fptr(pl, res[2]));
      else
        forward(shape, fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), mask, fptr(pl, res[0]), fptr(pl, res[1]));
    });
    return true;
  }
  case OpKind::Dropout: {
    // With one operand (an inference graph) dropout is x itself; the
    // reference copies it.
    if (node.operands.size() != 2) return false;
    double prob = ir::attrFloat(node.op, node.attrs, "p");
    uint64_t seed = static_cast<uint64_t>(ir::attrInt(node.op, node.attrs, "seed"));
    int64_t key = ir::attrInt(node.op, node.attrs, "key");
    ValueId x = node.operands[0], stepValue = node.operands[1];
    int64_t n = ir::numElements(ext(r));
    addKernel(p, i, "dropout", [=](Plan &pl) {
      int64_t step = static_cast<int64_t>(std::llround(fptr(pl, stepValue)[0]));
      kernels::dropout(fptr(pl, x), n, seed, key, step, prob, fptr(pl, r));
    });
    return true;
  }
  case OpKind::Max:
  case OpKind::MaxGrad: {
    // The masked max (unmasked: oneDNN's reduction) and every max gradient.
    bool grad = node.op == OpKind::MaxGrad;
    size_t maskAt = grad ? 2 : 1;
    if (!grad && node.operands.size() < 2) return false;
    const auto &x = ext(node.operands[0]);
    size_t axis = static_cast<size_t>(ir::normalizeAxis(ir::axisAttr(node.attrs), x.size()));
    bool masked = node.operands.size() > maskAt;
    ValueId maskValue = masked ? node.operands[maskAt] : -1;
    int64_t outer, len, inner;
    if (!reduceView(x, masked ? &ext(maskValue) : nullptr, axis, outer, len, inner)) return false;
    ValueId src = node.operands[0], dy = grad ? node.operands[1] : -1;
    addKernel(p, i, ir::opName(node.op), [=](Plan &pl) {
      const uint8_t *mask = masked ? static_cast<uint8_t *>(pl.ptr[maskValue]) : nullptr;
      if (grad) kernels::maskedMaxGrad(fptr(pl, src), fptr(pl, dy), mask, outer, len, inner, fptr(pl, r));
      else kernels::maskedMax(fptr(pl, src), mask, outer, len, inner, fptr(pl, r));
    });
    return true;
  }
  case OpKind::Softmax:
  case OpKind::LogSoftmax: {
    if (node.operands.size() != 2) return false; // unmasked: the oneDNN primitive
    const auto &x = ext(node.operands[0]);
    size_t axis = static_cast<size_t>(ir::normalizeAxis(ir::axisAttr(node.attrs), x.size()));
    Dims m = alignRank(ext(node.operands[1]), x.size());
    int64_t outer = product(x, 0, axis), len = x[axis], inner = product(x, axis + 1, x.size());
    for (size_t d = axis + 1; d < x.size(); ++d)
      if (m[d] != 1) return false; // the kernel broadcasts the mask over the inner dims only
    // The mask offset of each outer slice, from the mask's broadcast strides.
    Dims ms = denseStrides(m);
    for (size_t d = 0; d < x.size(); ++d)
      if (m[d] == 1) ms[d] = 0;
    auto rows = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(outer));
    for (int64_t o = 0; o < outer; ++o) {
      int64_t rest = o, off = 0;
      for (size_t d = axis; d-- > 0;) {
        off += (rest % x[d]) * ms[d];
        rest /= x[d];
      }
      (*rows)[o] = off;
    }
    int64_t stride = ms[axis];
    bool log = node.op == OpKind::LogSoftmax;
    ValueId src = node.operands[0], mask = node.operands[1];
    addKernel(p, i, ir::opName(node.op), [=](Plan &pl) {
      kernels::maskedSoftmax(fptr(pl, src), static_cast<uint8_t *>(pl.ptr[mask]), rows->data(), stride, outer, len,
                             inner, log, fptr(pl, r));
    });
    return true;
  }
  case OpKind::SumTo: {
    // Summing the leading dims away (a bias gradient): column sums.
    const auto &x = ext(node.operands[0]), &out = ext(r);
    Dims target = alignRank(out, x.size());
    size_t lead = 0;
    while (lead < x.size() && target[lead] == 1) ++lead;
    for (size_t d = lead; d < x.size(); ++d)
      if (target[d] != x[d]) return false;
    int64_t rows = product(x, 0, lead), cols = product(x, lead, x.size());
    ValueId src = node.operands[0];
    addKernel(p, i, "sum_to", [=](Plan &pl) { kernels::columnSums(fptr(pl, src), rows, cols, fptr(pl, r)); });
    return true;
  }
  case OpKind::AdamMoment: {
    float beta = static_cast<float>(ir::attrFloat(node.op, node.attrs, "beta"));
    bool square = ir::attrBool(node.op, node.attrs, "square");
    ValueId m = node.operands[0], g = node.operands[1];
    int64_t n = ir::numElements(ext(r));
    addKernel(p, i, "adam_moment", [=](Plan &pl) { kernels::adamMoment(fptr(pl, m), fptr(pl, g), n, beta, square, fptr(pl, r)); });
    return true;
  }
  case OpKind::AdamUpdate: {
    float eps = static_cast<float>(ir::attrFloat(node.op, node.attrs, "eps"));
    auto o = node.operands;
    int64_t n = ir::numElements(ext(r));
    addKernel(p, i, "adam_update", [=](Plan &pl) {
      kernels::adamUpdate(fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), n, fptr(pl, o[3])[0], fptr(pl, o[4])[0], eps,
                          fptr(pl, r));
    });
    return true;
  }
  case OpKind::Conv1d:
  case OpKind::Conv1dInputGrad:
  case OpKind::Conv1dWeightGrad: return lowerConv(p, i);
  case OpKind::WeightGrad: {
    // Sum over the batch of a^T dy: one 2-D product contracting the batch
    // and row dims together, a read as [K, rows] through its strides.
    const auto &ea = ext(node.operands[0]), &ed = ext(node.operands[1]);
    int64_t rowsTotal = product(ea, 0, ea.size() - 1), k = ea.back(), n = ed.back();
    if (rowsTotal == 0) return false; // the reference writes the zeros
    memory::desc mdA({k, rowsTotal}, memory::data_type::f32, {1, k});
    memory::desc mdD({rowsTotal, n}, memory::data_type::f32, {n, 1});
    memory::desc mdOut({k, n}, memory::data_type::f32, {n, 1});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(mdA, mdD, mdOut), engine_);
    addPrimitive(p, i, "weight_grad (onednn matmul)", dnnl::matmul(pd),
                 {{DNNL_ARG_SRC, bind(mdA, node.operands[0])},
                  {DNNL_ARG_WEIGHTS, bind(mdD, node.operands[1])},
                  {DNNL_ARG_DST, bind(mdOut, r)}});
    return true;
  }
  case OpKind::AdamStep: {
    float beta1 = static_cast<float>(ir::attrFloat(node.op, node.attrs, "beta1"));
    float beta2 = static_cast<float>(ir::attrFloat(node.op, node.attrs, "beta2"));
    float eps = static_cast<float>(ir::attrFloat(node.op, node.attrs, "eps"));
    auto o = node.operands;
    std::vector<ValueId> res = node.results();
    int64_t n = ir::numElements(ext(r));
    addKernel(p, i, "adam_step", [=](Plan &pl) {
      kernels::adamStep(fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), fptr(pl, o[3]), n, beta1, beta2,
                        fptr(pl, o[4])[0], fptr(pl, o[5])[0], eps, fptr(pl, res[0]), fptr(pl, res[1]),
                        fptr(pl, res[2]));
    });
    return true;
  }
  case OpKind::Attention:
  case OpKind::AttentionGrad: {
    bool grad = node.op == OpKind::AttentionGrad;
    const auto &eq = ext(node.operands[0]), &ek = ext(node.operands[1]), &ev = ext(node.operands[2]);
    size_t rank = eq.size();
    kernels::AttentionShape shape{product(eq, 0, rank - 2), eq[rank - 2], ek[rank - 2], eq[rank - 1], ev[rank - 1],
                                  static_cast<float>(ir::attrFloat(node.op, node.attrs, "scale"))};
    size_t maskIndex = grad ? 6 : 3;
    bool masked = node.operands.size() > maskIndex;
    ValueId maskValue = masked ? node.operands[maskIndex] : -1;
    // The mask's offset for each batch slice and its strides along the
    // query and key dims, from its broadcast extents (stride 0 where it
    // broadcasts).
    auto offsets = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(shape.batch), 0);
    int64_t rowStride = 0, colStride = 0;
    if (masked) {
      Dims m = alignRank(ext(maskValue), rank);
      Dims ms = denseStrides(m);
      for (size_t d = 0; d < rank; ++d)
        if (m[d] == 1) ms[d] = 0;
      rowStride = ms[rank - 2];
      colStride = ms[rank - 1];
      for (int64_t b = 0; b < shape.batch; ++b) {
        int64_t rest = b, off = 0;
        for (size_t d = rank - 2; d-- > 0;) {
          off += (rest % eq[d]) * ms[d];
          rest /= eq[d];
        }
        (*offsets)[b] = off;
      }
    }
    auto o = node.operands;
    std::vector<ValueId> res = node.results();
    addKernel(p, i, ir::opName(node.op), [=](Plan &pl) {
      kernels::AttentionMask mask{masked ? static_cast<uint8_t *>(pl.ptr[maskValue]) : nullptr, offsets->data(),
                                  rowStride, colStride};
      const kernels::AttentionMask *mp = masked ? &mask : nullptr;
      if (!grad)
        kernels::attention(shape, fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), mp, fptr(pl, res[0]),
                           fptr(pl, res[1]));
      else
        kernels::attentionGrad(shape, fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), fptr(pl, o[4]),
                               fptr(pl, o[5]), mp, fptr(pl, res[0]), fptr(pl, res[1]), fptr(pl, res[2]));
    });
    return true;
  }
  case OpKind::AdditiveAttention:
  case OpKind::AdditiveAttentionGrad: {
    // The shape rule fixes the layout: h, k [..., t, e], v [..., t, ev] and
    // the mask bool[..., t, 1], one byte per position, all dense.
    bool grad = node.op == OpKind::AdditiveAttentionGrad;
    const auto &eh = ext(node.operands[0]), &ev = ext(node.operands[2]);
    size_t rank = eh.size();
    kernels::AdditiveShape shape{product(eh, 0, rank - 2), eh[rank - 2], eh[rank - 1], ev[rank - 1],
                                 ir::attrString(node.op, node.attrs, "pooling") == "mean"};
    size_t maskIndex = grad ? 6 : 5;
    bool masked = node.operands.size() > maskIndex;
    ValueId maskValue = masked ? node.operands[maskIndex] : -1;
    auto o = node.operands;
    std::vector<ValueId> res = node.results();
    addKernel(p, i, ir::opName(node.op), [=](Plan &pl) {
      const uint8_t *mask = masked ? static_cast<uint8_t *>(pl.ptr[maskValue]) : nullptr;
      if (!grad)
        kernels::additiveAttention(shape, fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), fptr(pl, o[3]),
                                   fptr(pl, o[4])[0], mask, fptr(pl, res[0]), fptr(pl, res[1]));
      else
        kernels::additiveAttentionGrad(shape, fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), fptr(pl, o[3]),
                                       fptr(pl, o[4]), fptr(pl, o[5]), mask, fptr(pl, res[0]), fptr(pl, res[1]),
                                       fptr(pl, res[2]), fptr(pl, res[3]));
    });
    return true;
  }
  case OpKind::Elementwise: {
    ir::ElementwiseProgram program = ir::parseBody(ir::attrString(node.op, node.attrs, "body"), node.operands.size());
    auto steps = std::make_shared<std::vector<kernels::ElementwiseStep>>();
    int numOperands = static_cast<int>(node.operands.size());
    auto slot = [&](ir::ElementwiseProgram::Ref ref) { return ref.operand ? ref.index : numOperands + ref.index; };
    for (const ir::ElementwiseProgram::Step &step : program.steps) {
      std::optional<kernels::ElementwiseOp> op = elementwiseOp(step.op);
      if (!op) return false; // an op the kernel lacks: the reference runs the node
      steps->push_back({*op, slot(step.args[0]), step.args.size() > 1 ? slot(step.args[1]) : -1});
    }
    auto scalar = std::make_shared<std::vector<uint8_t>>();
    for (ValueId o : node.operands) scalar->push_back(ext(o).empty());
    auto o = node.operands;
    int64_t n = ir::numElements(ext(r));
    addKernel(p, i, "elementwise", [=](Plan &pl) {
      std::vector<const float *> operands;
      for (ValueId v : o) operands.push_back(fptr(pl, v));
      kernels::elementwise(steps->data(), static_cast<int>(steps->size()), operands.data(), scalar->data(),
                           numOperands, n, fptr(pl, r));
    });
    return true;
  }
  default: return false;
  }
}

/// conv1d and its gradients as oneDNN convolution primitives. Sequences
/// [N, W, C] are oneDNN's nwc (the batch dims fold into N), read and written
/// in place; the weights [O, C, K] (oiw) are reordered into the blocked
/// layout the primitive picks (format `any`), and a weight gradient back,
/// each a small extra step: with plain oiw weights oneDNN 2.6 has only its
/// reference convolution (~1 GFLOP/s here), blocked ones get its JIT kernels.
/// The backward primitives take the forward one as their hint, as oneDNN
/// requires.
bool OnednnExecutable::lowerConv(Plan &p, size_t i) {
  const ir::Node &node = graph_.nodes()[i];
  auto ext = [&](ValueId v) -> const std::vector<int64_t> & { return p.extents[v]; };
  bool forward = node.op == OpKind::Conv1d, inputGrad = node.op == OpKind::Conv1dInputGrad;
  // The x-like and y-like values: the input (or dx) and output (or dy).
  ValueId xv = forward || !inputGrad ? node.operands[0] : node.result;
  ValueId yv = forward ? node.result : node.operands[inputGrad ? 0 : 1];
  ValueId wv = forward || inputGrad ? node.operands[1] : node.result;
  const auto &ex = ext(xv), &ey = ext(yv), &ew = ext(wv);
  int64_t n = product(ex, 0, ex.size() - 2), width = ex[ex.size() - 2], outWidth = ey[ey.size() - 2];
  int64_t c = ex.back(), o = ey.back(), k = ew[2];
  if (n == 0 || width == 0 || outWidth == 0 || c == 0 || o == 0) return false; // the reference writes the zeros
  Dims padding{ir::attrInt(node.op, node.attrs, "padding")}, strides{1};
  memory::desc mdX({n, c, width}, memory::data_type::f32, {width * c, 1, c});
  memory::desc mdY({n, o, outWidth}, memory::data_type::f32, {outWidth * o, 1, o});
  memory::desc mdW({o, c, k}, memory::data_type::f32, {c * k, k, 1});
  memory::desc mdAny({o, c, k}, memory::data_type::f32, memory::format_tag::any);
  memory::desc mdB({o}, memory::data_type::f32, {1});
  bool bias = forward && node.operands.size() > 2;
  auto fwdDesc = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                        dnnl::algorithm::convolution_direct, mdX, mdAny, mdB, mdY,
                                                        strides, padding, padding)
                      : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                        dnnl::algorithm::convolution_direct, mdX, mdAny, mdY, strides,
                                                        padding, padding);
  dnnl::convolution_forward::primitive_desc fwd(fwdDesc, engine_);
  auto label = [&](const char *what, const dnnl::primitive_desc_base &pd) {
    return fmt::format("{} (onednn {})", what, pd.impl_info_str());
  };
  // The weights in the primitive's layout: the graph's own when they agree,
  // else a buffer of the plan's filled (or emptied) by a reorder step.
  auto weightsIn = [&](const memory::desc &want) -> Bound {
    if (want == mdW) return bind(mdW, wv);
    Bound blocked{memory(want, engine_), -1};
    dnnl::reorder::primitive_desc pd(engine_, mdW, engine_, want);
    addPrimitive(p, i, "conv1d weights to blocked (onednn reorder)", dnnl::reorder(pd),
                 {{DNNL_ARG_FROM, bind(mdW, wv)}, {DNNL_ARG_TO, blocked}});
    return blocked;
  };
  if (forward) {
    std::vector<std::pair<int, Bound>> args{{DNNL_ARG_SRC, bind(mdX, xv)}, {DNNL_ARG_WEIGHTS, weightsIn(fwd.weights_desc())},
                                            {DNNL_ARG_DST, bind(mdY, yv)}};
    if (bias) args.push_back({DNNL_ARG_BIAS, bind(mdB, node.operands[2])});
    addPrimitive(p, i, label("conv1d", fwd), dnnl::convolution_forward(fwd), std::move(args));
    return true;
  }
  if (inputGrad) {
    dnnl::convolution_backward_data::primitive_desc pd(
        dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, mdX, mdAny, mdY, strides, padding,
                                              padding),
        engine_, fwd);
    Bound weights = weightsIn(pd.weights_desc());
    addPrimitive(p, i, label("conv1d_input_grad", pd), dnnl::convolution_backward_data(pd),
                 {{DNNL_ARG_DIFF_DST, bind(mdY, yv)}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DIFF_SRC, bind(mdX, xv)}});
    return true;
  }
  dnnl::convolution_backward_weights::primitive_desc pd(
      dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, mdX, mdAny, mdY, strides, padding,
                                               padding),
      engine_, fwd);
  memory::desc got = pd.diff_weights_desc();
  Bound dw = got == mdW ? bind(mdW, wv) : Bound{memory(got, engine_), -1};
  addPrimitive(p, i, label("conv1d_weight_grad", pd), dnnl::convolution_backward_weights(pd),
               {{DNNL_ARG_SRC, bind(mdX, xv)}, {DNNL_ARG_DIFF_DST, bind(mdY, yv)}, {DNNL_ARG_DIFF_WEIGHTS, dw}});
  if (!(got == mdW)) {
    dnnl::reorder::primitive_desc back(engine_, got, engine_, mdW);
    addPrimitive(p, i, "conv1d weight gradient from blocked (onednn reorder)", dnnl::reorder(back),
                 {{DNNL_ARG_FROM, dw}, {DNNL_ARG_TO, bind(mdW, wv)}});
  }
  return true;
}

std::vector<runtime::NodeTiming> OnednnExecutable::profile() const {
  std::vector<runtime::NodeTiming> out;
  if (!lastPlan_) return out;
  for (size_t i = 0; i < lastPlan_->steps.size(); ++i)
    out.push_back({lastPlan_->steps[i].node, lastPlan_->steps[i].label, lastPlan_->seconds[i], lastPlan_->calls[i]});
  return out;
}

} // namespace

std::unique_ptr<runtime::Executable> compile(const ir::Graph &g, const runtime::CompileOptions &options) {
  return std::make_unique<OnednnExecutable>(g, options);
}

} // namespace kiln::backends::onednn
