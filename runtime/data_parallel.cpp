//===- runtime/data_parallel.cpp - one data-parallel training step ----------===//
//
// The two halves of a step (runtime/distributed.h). computeGradients runs
// the gradient graph on this rank's rows and exchanges:
//  - dense gradients are summed in buckets, in the order the backward pass
//    finishes them: a gradient of at least kBucketBytes alone, runs of
//    smaller ones (biases, norms) packed together up to that size, since
//    each sum costs a round of latency however small it is. Where the
//    backend reports each output as it is final (the step-by-step plans of
//    onednn; not the llvm backend's one compiled function, nor the
//    reference interpreter), a gradient is copied into its bucket then and
//    a full bucket's non-blocking sum starts while the backward pass goes
//    on; MPI is let to move the sums on between steps. Buckets start in a
//    fixed order on every rank, so the sums add in a fixed order and a run
//    repeats bit for bit;
//  - a table's gradient rows are gathered with their ids (every rank gets
//    all ranks' rows, in rank order), which for a batch's few hundred rows
//    is far less than the [V,E] table; when all ranks' rows together
//    outweigh the table (a small vocabulary, or many ranks), the table is
//    summed densely instead and the rows touched are taken from the sum.
// update then sums the caller's totals (loss, right predictions, a stop
// request), waits for the dense sums, and runs the update graph on the
// sums: every rank computes the same new parameters.
//
//===----------------------------------------------------------------------===//
#include "runtime/distributed.h"

#include "ir/diagnostic.h"

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstring>
#include <fmt/format.h>
#include <numeric>

namespace kiln::runtime {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

/// Gradients smaller than this are packed together into one sum.
constexpr int64_t kBucketBytes = 256 * 1024;

} // namespace

int64_t roundUpToFewSizes(int64_t n, int64_t sizes) {
  int64_t step = std::max<int64_t>(1, static_cast<int64_t>(std::bit_floor(static_cast<uint64_t>(n))) / sizes);
  return (n + step - 1) / step * step;
}

DataParallelStep::DataParallelStep(const DataParallel &dp)
    : dp_(dp), gatheredIds_(dp.rowTables.size()), gatheredRows_(dp.rowTables.size()) {
  const ir::Graph &u = dp.update->graph(), &g = dp.gradients->graph();
  // The order the backward pass finishes the gradients in: their nodes'.
  std::map<std::string, ir::NodeId> producer;
  for (const ir::Output &o : g.outputs()) producer[o.name] = g.value(o.value).producer;
  std::vector<size_t> order(dp.denseGradients.size());
  std::iota(order.begin(), order.end(), size_t{0});
  auto finishedAt = [&](size_t i) {
    auto it = producer.find(dp.denseGradients[i]);
    return it == producer.end() || it->second < 0 ? INT32_MAX : it->second;
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return finishedAt(a) < finishedAt(b); });
  slot_.resize(dp.denseGradients.size());
  copied_.assign(dp.denseGradients.size(), false);
  for (size_t i : order) {
    const std::string &name = dp.denseGradients[i];
    denseIndex_[name] = i;
    int64_t n = ir::numElements(*ir::concreteShape(u.type(u.findInput(name)).shape, {}));
    totals_.denseBytes += n * 4;
    // A bucket of kBucketBytes or more holds one gradient; smaller ones
    // pack up to that size.
    bool alone = n * 4 >= kBucketBytes;
    bool joins = !alone && !buckets_.empty() &&
                 (static_cast<int64_t>(buckets_.back().sum.size()) + n) * 4 <= kBucketBytes;
    if (!joins) buckets_.emplace_back();
    Bucket &b = buckets_.back();
    slot_[i] = {buckets_.size() - 1, b.gradients.size()};
    b.gradients.push_back(i);
    b.offsets.push_back(b.sum.size());
    b.sum.resize(b.sum.size() + static_cast<size_t>(n));
  }
  for (const DataParallel::Rows &t : dp.rowTables) {
    const ir::Shape &shape = u.type(u.findParam(t.param)).shape; // [V, E]
    tableShapes_.push_back({shape[0].value, shape[1].value});
    totals_.tableBytes += shape[0].value * shape[1].value * 4;
  }
  observed_ = dp.gradients->observeRuns(this);
}

DataParallelStep::~DataParallelStep() {
  if (observed_) dp_.gradients->observeRuns(nullptr);
}

void DataParallelStep::outputFinal(const std::string &name, const Tensor &value) {
  if (!inBackward_) return;
  auto it = denseIndex_.find(name);
  if (it != denseIndex_.end()) gradientFinal(it->second, value.f32());
}

void DataParallelStep::stepDone() {
  if (!inBackward_ || nextBucket_ == 0) return;
  // A plan has hundreds of steps, some of a few microseconds, and
  // MPI_Testall polls every transport: at most one call per 50 us.
  auto now = Clock::now();
  if (now - lastProgress_ < std::chrono::microseconds(50)) return;
  lastProgress_ = now;
  dp_.comm->progressSums();
}

void DataParallelStep::gradientFinal(size_t i, std::span<const float> value) {
  if (copied_[i]) return;
  auto [bucket, position] = slot_[i];
  Bucket &b = buckets_[bucket];
  size_t expected = (position + 1 < b.offsets.size() ? b.offsets[position + 1] : b.sum.size()) - b.offsets[position];
  if (value.size() != expected)
    throw Error(fmt::format("gradient '{}' has {} elements, not the {} of its parameter", dp_.denseGradients[i],
                            value.size(), expected)); // a backend's bug
  std::copy(value.begin(), value.end(), b.sum.begin() + static_cast<ptrdiff_t>(b.offsets[position]));
  copied_[i] = true;
  ++b.ready;
  startFullBuckets();
}

void DataParallelStep::newSums() {
  for (Bucket &b : buckets_) b.ready = 0;
  std::fill(copied_.begin(), copied_.end(), false);
  nextBucket_ = 0;
}

void DataParallelStep::startRemainingSums() {
  for (size_t i = 0; i < dp_.denseGradients.size(); ++i) gradientFinal(i, gradients_.at(dp_.denseGradients[i]).f32());
}

void DataParallelStep::startFullBuckets() {
  while (nextBucket_ < buckets_.size() && buckets_[nextBucket_].ready == buckets_[nextBucket_].gradients.size()) {
    dp_.comm->startSum(buckets_[nextBucket_].sum);
    totals_.sumsDuringBackward += inBackward_;
    ++nextBucket_;
  }
  summing_ = true;
}

void DataParallelStep::addStepInputs(TensorMap &part, double share, int64_t step,
                                     std::span<const int32_t> batchRows) const {
  const ir::Graph &g = dp_.gradients->graph();
  part.insert_or_assign("loss_scale", Tensor::scalar(static_cast<float>(share)));
  if (g.findInput("step") >= 0) part.insert_or_assign("step", Tensor::scalar(static_cast<float>(step)));
  if (g.findInput("batch_rows") >= 0)
    part.insert_or_assign("batch_rows", Tensor::fromI32({static_cast<int64_t>(batchRows.size())},
                                                        std::vector<int32_t>(batchRows.begin(), batchRows.end())));
}

void DataParallelStep::computeGradients(const TensorMap *part, const TensorMap &store) {
  auto start = Clock::now();
  Communicator &comm = *dp_.comm;
  newSums();
  if (part) {
    inBackward_ = true;
    lastProgress_ = start;
    try {
      dp_.gradients->runInto(*part, store, gradients_);
    } catch (...) {
      inBackward_ = false;
      throw;
    }
    inBackward_ = false;
  } else {
    const ir::Graph &u = dp_.update->graph();
    for (const std::string &name : dp_.denseGradients)
      gradients_[name] = Tensor(ir::DType::F32, *ir::concreteShape(u.type(u.findInput(name)).shape, {}));
  }
  // The gradients the backend did not report (all of them, for a backend
  // that cannot) start now.
  startRemainingSums();
  totals_.gradientSeconds += since(start);
  // The tables' gradients go out now: the ids are the part's own input.
  start = Clock::now();
  for (size_t t = 0; t < dp_.rowTables.size(); ++t) {
    std::span<const int32_t> ids;
    std::span<const float> dy;
    if (part) {
      ids = part->at(dp_.rowTables[t].ids).i32();
      dy = gradients_.at(dp_.rowTables[t].gradientRows).f32();
    }
    auto [rows, width] = tableShapes_[t];
    // Rows or the dense table, whichever is smaller, as all ranks decide
    // alike from the number of ids they have together.
    std::array<double, 1> idsInAll{static_cast<double>(ids.size())};
    comm.sum(idsInAll);
    if (idsInAll[0] * static_cast<double>(width + 1) <= static_cast<double>(rows * width)) {
      comm.gather(ids, gatheredIds_[t]);
      comm.gather(dy, gatheredRows_[t]);
      totals_.rowBytes += static_cast<int64_t>(ids.size_bytes() + dy.size_bytes());
      continue;
    }
    // The dense sum, then each row that any rank touched, once: the
    // update graph's scatter-add (or lazy Adam's rows) sees the same
    // gradient as with every rank's rows.
    comm.gather(ids, gatheredIds_[t]);
    std::vector<int32_t> &touched = gatheredIds_[t];
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    if (!touched.empty() && (touched.front() < 0 || touched.back() >= rows))
      throw Error(fmt::format("a table gradient's id {} is outside the table's {} rows",
                              touched.front() < 0 ? touched.front() : touched.back(), rows));
    denseTable_.assign(static_cast<size_t>(rows * width), 0.0f);
    for (size_t i = 0; i < ids.size(); ++i) {
      float *to = denseTable_.data() + static_cast<int64_t>(ids[i]) * width;
      const float *from = dy.data() + static_cast<int64_t>(i) * width;
      for (int64_t e = 0; e < width; ++e) to[e] += from[e];
    }
    comm.sum(denseTable_);
    gatheredRows_[t].resize(touched.size() * static_cast<size_t>(width));
    for (size_t i = 0; i < touched.size(); ++i)
      std::copy_n(denseTable_.data() + static_cast<int64_t>(touched[i]) * width, width,
                  gatheredRows_[t].data() + static_cast<int64_t>(i) * width);
    totals_.rowBytes += static_cast<int64_t>(ids.size_bytes()) + rows * width * 4;
  }
  totals_.exchangeSeconds += since(start);
}

void DataParallelStep::update(std::span<double> totals, double lr, int64_t step, const TensorMap &store,
                              TensorMap &outputs) {
  exchange(totals);
  applyUpdate(lr, step, store, outputs);
}

void DataParallelStep::exchange(std::span<double> totals) {
  auto start = Clock::now();
  Communicator &comm = *dp_.comm;
  if (!summing_) {
    // No computeGradients since the last exchange: the gradients as they are.
    newSums();
    startRemainingSums();
  }
  comm.sum(totals);
  comm.finishSums();
  summing_ = false;
  for (const Bucket &b : buckets_)
    for (size_t k = 0; k < b.gradients.size(); ++k) {
      auto g = gradients_.at(dp_.denseGradients[b.gradients[k]]).f32();
      std::copy_n(b.sum.begin() + static_cast<ptrdiff_t>(b.offsets[k]), g.size(), g.begin());
    }
  totals_.exchangeSeconds += since(start);
}

void DataParallelStep::applyUpdate(double lr, int64_t step, const TensorMap &store, TensorMap &outputs) {
  auto start = Clock::now();
  const ir::Graph &u = dp_.update->graph();
  updateInputs_.clear();
  for (const std::string &name : dp_.denseGradients) {
    Tensor &grad = gradients_.at(name);
    updateInputs_.emplace(name, Tensor::view(grad.dtype(), grad.shape(), grad.raw()));
  }
  for (size_t t = 0; t < dp_.rowTables.size(); ++t) {
    const std::string &name = dp_.rowTables[t].gradientRows;
    int64_t width = u.type(u.findInput(name)).shape[1].value; // [K, E]
    // The update graph is compiled per K; a K that changed every step would
    // compile it every step. K is rounded up to one of two sizes per power
    // of two, the extra entries a repeat of the first id with a zero row:
    // a scatter-add of zero changes nothing, and lazy Adam updates a row
    // once however often its id comes.
    int64_t k = static_cast<int64_t>(gatheredIds_[t].size());
    if (k > 0) {
      int64_t padded = roundUpToFewSizes(k, 2);
      gatheredIds_[t].resize(static_cast<size_t>(padded), gatheredIds_[t].front());
      gatheredRows_[t].resize(static_cast<size_t>(padded * width), 0.0f);
      k = padded;
    }
    updateInputs_.emplace(name + ".ids", Tensor::view(ir::DType::I32, {k}, gatheredIds_[t].data()));
    updateInputs_.emplace(name, Tensor::view(ir::DType::F32, {k, width}, gatheredRows_[t].data()));
  }
  updateInputs_.emplace("lr", Tensor::scalar(static_cast<float>(lr)));
  updateInputs_.emplace("step", Tensor::scalar(static_cast<float>(step)));
  dp_.update->runInto(updateInputs_, store, outputs);
  totals_.updateSeconds += since(start);
  ++totals_.steps;
}

std::string DataParallelStep::summary() const {
  double steps = static_cast<double>(std::max<int64_t>(totals_.steps, 1));
  auto ms = [&](double seconds) { return seconds * 1e3 / steps; };
  std::string rows = dp_.rowTables.empty()
                         ? std::string()
                         : fmt::format(" and {:.2f} MB of embedding-table gradients sent as rows or dense",
                                       static_cast<double>(totals_.rowBytes) / steps / 1e6);
  std::string early =
      observed_ ? fmt::format("{:.1f} of the {} sums started during the backward pass",
                              static_cast<double>(totals_.sumsDuringBackward) / steps, buckets_.size())
                : std::string("the sums started after the backward pass (this backend does not tell when each "
                              "gradient is final)");
  return fmt::format("{} process{}, {} step{}: {:.2f} ms per step = gradients {:.2f} + exchange {:.2f} ({:.2f} MB of "
                     "dense gradients summed in {} call{}{}; {}) + update {:.2f}",
                     dp_.comm->size(), dp_.comm->size() == 1 ? "" : "es", totals_.steps, totals_.steps == 1 ? "" : "s",
                     ms(totals_.gradientSeconds + totals_.exchangeSeconds + totals_.updateSeconds),
                     ms(totals_.gradientSeconds), ms(totals_.exchangeSeconds),
                     static_cast<double>(totals_.denseBytes) / 1e6, buckets_.size(), buckets_.size() == 1 ? "" : "s",
                     rows, early, ms(totals_.updateSeconds));
}

} // namespace kiln::runtime
