//===- backends/common/planned_executable.cpp - what every CPU backend shares -===//
//
// Compilation of a plan, once per symbol bindings:
//  1. Concrete extents of every value. Fusion is not done here: the passes
//     (passes/fuse_*.cpp) made fused ops, each lowered as one step, so the
//     memory plan is the plan that runs.
//  2. Memory: passes::planMemory lays every intermediate out in one arena,
//     with in-place results where the backend says its kernel allows it.
//  3. One step (or a few) per node from the backend's lowerNode, or the
//     reference kernel on views of the arena. Inputs and parameters stay in
//     the caller's tensors; their addresses are set at every run.
// Running is then: bind pointers, run the plan, copy outputs.
//
//===----------------------------------------------------------------------===//
#include "backends/common/planned_executable.h"

#include "backends/kernels/parallel.h"
#include "backends/reference/interpreter.h"
#include "passes/flops.h"

#include <chrono>
#include <cstring>
#include <fmt/format.h>
#include <omp.h>
#include <sys/mman.h>

namespace kiln::backends {

using ir::DType;
using ir::Node;
using ir::OpKind;
using ir::ValueId;
using runtime::Tensor;

AlignedBuffer::AlignedBuffer(size_t bytes) {
  if (!bytes) return;
  mapped = (bytes + 4095) / 4096 * 4096;
  void *p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  data = p;
}

AlignedBuffer::~AlignedBuffer() {
  if (data) munmap(data, mapped);
}

OmpThreads::OmpThreads(int threads) : previous_(omp_get_max_threads()) {
  if (threads != previous_) omp_set_num_threads(threads);
}

OmpThreads::~OmpThreads() {
  if (omp_get_max_threads() != previous_) omp_set_num_threads(previous_);
}

int64_t product(const std::vector<int64_t> &e, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= e[i];
  return p;
}

std::vector<int64_t> denseStrides(const std::vector<int64_t> &d) {
  std::vector<int64_t> s(d.size());
  int64_t step = 1;
  for (size_t i = d.size(); i-- > 0;) {
    s[i] = step;
    step *= d[i];
  }
  return s;
}

std::vector<int64_t> alignRank(const std::vector<int64_t> &small, size_t rank) {
  std::vector<int64_t> d(rank, 1);
  std::copy(small.begin(), small.end(), d.begin() + static_cast<std::ptrdiff_t>(rank - small.size()));
  return d;
}

void addStep(Plan &p, size_t node, std::string label, std::function<void()> body) {
  p.steps.push_back({static_cast<ir::NodeId>(node), std::move(label), std::move(body)});
}

ValueId rootOf(const Plan &p, ValueId v) {
  while (p.memory.values[v].aliasOf >= 0 && p.memory.values[v].aliasOf != v) v = p.memory.values[v].aliasOf;
  return v;
}

namespace {

/// Below this many FLOPs (passes::graphFlops: 2·M·N·K per matmul, a few per
/// element elsewhere) a plan runs on one thread; measured on the example
/// models: 4 MFLOP (additive, B=1) is 15% faster on one thread, 21 MFLOP
/// (dot-product, B=1) 15% slower.
constexpr double kSingleThreadFlops = 8e6;

/// The size of the team an OpenMP parallel region gets in the current
/// scope: what the plan's steps will run on, measured rather than assumed
/// (OMP_THREAD_LIMIT or OMP_DYNAMIC may give fewer than asked for).
int ompTeamSize() {
  int team = 1;
#pragma omp parallel
  {
#pragma omp single
    team = omp_get_num_threads();
  }
  return team;
}

} // namespace

PlannedExecutable::PlannedExecutable(const ir::Graph &g, const runtime::CompileOptions &o)
    : graph_(g), requestedThreads_(o.threads) {}

int64_t PlannedExecutable::workspaceBytes() const { return lastPlan_ ? lastPlan_->memory.arenaBytes : 0; }
int PlannedExecutable::threads() const { return lastPlan_ ? lastPlan_->threads : 0; }
double PlannedExecutable::compileSeconds() const { return lastPlan_ ? lastPlan_->buildSeconds : 0; }

runtime::TensorMap PlannedExecutable::run(const runtime::TensorMap &inputs, const runtime::TensorMap &params) {
  runtime::TensorMap out;
  execute(inputs, params, out, /*bindGiven=*/false);
  return out;
}

void PlannedExecutable::runInto(const runtime::TensorMap &inputs, const runtime::TensorMap &params,
                                runtime::TensorMap &outputs) {
  execute(inputs, params, outputs, /*bindGiven=*/true);
}

bool PlannedExecutable::inPlace(const Plan &, const Node &, size_t) const { return false; }

/// Runs the plan; with bindGiven, an output whose tensor in `out` fits (and
/// whose value no view or in-place result shares) is computed straight into
/// that tensor, the others are copied out of the arena.
void PlannedExecutable::execute(const runtime::TensorMap &inputs, const runtime::TensorMap &params,
                                runtime::TensorMap &out, bool bindGiven) {
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

  try {
    OmpThreads threads(plan.threads);
    runPlan(plan);
    synchronize();
  } catch (const kernels::IndexError &e) {
    const Node &n = graph_.nodes()[static_cast<size_t>(e.node)];
    throw Error(fmt::format("{}: id {} at position {} is outside [0, {})", ir::opName(n.op), e.value, e.position,
                            e.bound),
                n.locs.empty() ? SourceLoc{} : n.locs.front());
  }

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

void PlannedExecutable::runPlan(Plan &p) {
  for (size_t k = 0; k < p.steps.size(); ++k) runStep(p, k);
}

void PlannedExecutable::runStep(Plan &p, size_t k) {
  if (!profiling_) {
    p.steps[k].run();
  } else {
    auto t0 = std::chrono::steady_clock::now();
    p.steps[k].run();
    synchronize();
    p.seconds[k] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++p.calls[k];
  }
  if (!observer_) return;
  if (!p.finalOutputs[k].empty()) {
    synchronize();
    for (size_t o : p.finalOutputs[k]) {
      const ir::Output &out = graph_.outputs()[o];
      observer_->outputFinal(out.name, Tensor::view(graph_.type(out.value).dtype, p.extents[out.value], p.ptr[out.value]));
    }
  }
  observer_->stepDone();
}

bool PlannedExecutable::observeRuns(RunObserver *observer) {
  observer_ = runsStepByStep() ? observer : nullptr;
  return observer_ != nullptr;
}

/// Run-time data a kernel would otherwise trip over: ids and labels out of
/// range are user errors, found before any step runs.
void PlannedExecutable::checkIndices(const Plan &plan, const std::vector<const Tensor *> &given) const {
  for (const Node &n : graph_.nodes()) {
    if (n.op != OpKind::Embedding && n.op != OpKind::CrossEntropy) continue;
    ValueId idx = n.operands[1];
    if (!given[idx]) continue; // computed ids are checked by the reference kernel path
    int64_t bound = n.op == OpKind::Embedding ? plan.extents[n.operands[0]][0] : plan.extents[n.operands[0]][1];
    auto ids = given[idx]->i32();
    // cross_entropy's label -1 marks a row that does not count.
    int32_t lowest = n.op == OpKind::CrossEntropy ? -1 : 0;
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] < lowest || ids[i] >= bound)
        throw Error(fmt::format("{}: {} {} at position {} is outside [0, {})", ir::opName(n.op),
                                n.op == OpKind::Embedding ? "id" : "label", ids[i], i, bound),
                    n.locs.empty() ? SourceLoc{} : n.locs.front());
  }
}

/// The plan for these symbol bindings, built on first use; at most
/// kMaxPlans are kept, the least recently used dropped first.
Plan &PlannedExecutable::planFor(const ir::SymbolBindings &b) {
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
    auto t0 = std::chrono::steady_clock::now();
    build(*plan, b);
    plan->buildSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    it = plans_.emplace(b, std::move(plan)).first;
  }
  it->second->lastUse = ++useClock_;
  return *it->second;
}

/// Every plan runs in one arena, grown to the largest plan's size: the plans
/// of one executable never run at the same time. A plan's addresses are
/// recomputed when the arena it was bound to has moved.
void PlannedExecutable::bindArena(Plan &p) {
  size_t bytes = static_cast<size_t>(p.memory.arenaBytes);
  if (!arena_ || bytes > arenaBytes_) {
    // A quarter more than asked, so that a run over slowly growing lengths
    // does not remap (and fault in) its arena at every step.
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

void PlannedExecutable::build(Plan &p, const ir::SymbolBindings &b) {
  const auto &nodes = graph_.nodes();
  size_t n = graph_.numValues();
  p.bindings = b;
  p.extents.resize(n);
  for (size_t v = 0; v < n; ++v) p.extents[v] = *ir::concreteShape(graph_.type(static_cast<ValueId>(v)).shape, b);

  passes::PlanOptions opts;
  opts.inPlace = [&](const Node &node, size_t operand) { return inPlace(p, node, operand); };
  double work = static_cast<double>(passes::graphFlops(graph_, b));
  int wanted = work < kSingleThreadFlops ? 1 : requestedThreads_ > 0 ? requestedThreads_ : omp_get_max_threads();
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
    size_t stepsBefore = p.steps.size();
    bool lowered = false;
    try {
      lowered = lowerNode(p, i);
    } catch (const Error &) {
      throw;
    } catch (const std::exception &) {
      // A library refusing a shape (oneDNN rejects, e.g., a "reduction"
      // that reduces nothing): the reference kernel runs the node.
      lowered = false;
    }
    if (lowered) continue;
    p.steps.resize(stepsBefore);
    addReferenceStep(p, i);
  }
  // An output is final after the last step of its node. Outputs that are
  // views or in-place results of other values (their storage is another's)
  // and outputs without a step of their own are left out: an observer
  // hears of them when the run returns.
  p.finalOutputs.assign(p.steps.size(), {});
  std::vector<size_t> lastStep(nodes.size(), SIZE_MAX);
  for (size_t k = 0; k < p.steps.size(); ++k) lastStep[static_cast<size_t>(p.steps[k].node)] = k;
  for (size_t o = 0; o < graph_.outputs().size(); ++o) {
    ValueId v = graph_.outputs()[o].value;
    if (isExternal(v) || rootOf(p, v) != v) continue;
    ir::NodeId producer = graph_.value(v).producer;
    if (producer >= 0 && lastStep[static_cast<size_t>(producer)] != SIZE_MAX)
      p.finalOutputs[lastStep[static_cast<size_t>(producer)]].push_back(o);
  }
  p.seconds.assign(p.steps.size(), 0.0);
  p.calls.assign(p.steps.size(), 0);
  finishPlan(p);
}

/// The fallback: the reference kernel on views of this run's buffers.
void PlannedExecutable::addReferenceStep(Plan &p, size_t i) {
  Plan *plan = &p;
  // One thread: the big ops have kernels of their own, and std::threads
  // here would fight the OpenMP workers for the cores.
  int threads = 1;
  addStep(p, i, std::string(ir::opName(graph_.nodes()[i].op)) + " (reference)", [this, plan, i, threads]() {
    const Node &nd = graph_.nodes()[i];
    std::vector<Tensor> views;
    views.reserve(nd.operands.size());
    for (ValueId v : nd.operands) views.push_back(Tensor::view(graph_.type(v).dtype, plan->extents[v], plan->ptr[v]));
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
  });
}

std::vector<runtime::NodeTiming> PlannedExecutable::profile() const {
  std::vector<runtime::NodeTiming> out;
  if (!lastPlan_) return out;
  for (size_t i = 0; i < lastPlan_->steps.size(); ++i)
    out.push_back({lastPlan_->steps[i].node, lastPlan_->steps[i].label, lastPlan_->seconds[i], lastPlan_->calls[i]});
  return out;
}

} // namespace kiln::backends
