//===- runtime/data_parallel.cpp - one data-parallel training step ----------===//
//
// The two halves of a step (runtime/distributed.h). computeGradients runs
// the gradient graph on this rank's rows. update then exchanges:
//  - dense gradients are summed in buckets: a gradient of at least
//    kBucketBytes is summed where it lies; runs of smaller ones (biases,
//    norms) are packed into one buffer and summed with one call, since
//    each call costs a round of latency however small it is;
//  - a table's gradient rows are gathered with their ids (every rank gets
//    all ranks' rows, in rank order), which for a batch's few hundred rows
//    is far less than the [V,E] table; when all ranks' rows together
//    outweigh the table (a small vocabulary, or many ranks), the table is
//    summed densely instead and the rows touched are taken from the sum;
//  - the caller's totals (loss, right predictions, a stop request) ride in
//    one more sum.
// and runs the update graph on the sums: every rank computes the same new
// parameters.
//
//===----------------------------------------------------------------------===//
#include "runtime/distributed.h"

#include "ir/diagnostic.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <fmt/format.h>

namespace kiln::runtime {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

/// Gradients smaller than this are packed together into one sum.
constexpr int64_t kBucketBytes = 256 * 1024;

Tensor scalar(float v) { return Tensor::fromF32({}, {v}); }

/// n rounded up to the next 2^j or 1.5 * 2^j: at most half more, and two
/// sizes per power of two.
int64_t roundedRows(int64_t n) {
  int64_t power = 1;
  while (power < n) power *= 2;
  int64_t between = power / 4 * 3; // 1.5 * 2^(j-1)
  return between >= n && between > 0 ? between : power;
}

} // namespace

DataParallelStep::DataParallelStep(const DataParallel &dp)
    : dp_(dp), gatheredIds_(dp.rowTables.size()), gatheredRows_(dp.rowTables.size()) {
  const ir::Graph &u = dp.update->graph();
  bool packing = false; // whether the last bucket collects small gradients
  size_t packedFloats = 0, largestPack = 0;
  for (size_t i = 0; i < dp.denseGradients.size(); ++i) {
    int64_t n = ir::numElements(*ir::concreteShape(u.type(u.findInput(dp.denseGradients[i])).shape, {}));
    totals_.denseBytes += n * 4;
    bool small = n * 4 < kBucketBytes;
    if (small && packing) {
      buckets_.back().second = i + 1;
      packedFloats += static_cast<size_t>(n);
    } else {
      buckets_.push_back({i, i + 1});
      packedFloats = static_cast<size_t>(n);
    }
    packing = small;
    if (small) largestPack = std::max(largestPack, packedFloats);
  }
  packed_.resize(largestPack);
  for (const DataParallel::Rows &t : dp.rowTables) {
    const ir::Shape &shape = u.type(u.findParam(t.param)).shape; // [V, E]
    tableShapes_.push_back({shape[0].value, shape[1].value});
    totals_.tableBytes += shape[0].value * shape[1].value * 4;
  }
}

void DataParallelStep::addStepInputs(TensorMap &part, double share, int64_t step,
                                     std::span<const int32_t> batchRows) const {
  const ir::Graph &g = dp_.gradients->graph();
  part.insert_or_assign("loss_scale", scalar(static_cast<float>(share)));
  if (g.findInput("step") >= 0) part.insert_or_assign("step", scalar(static_cast<float>(step)));
  if (g.findInput("batch_rows") >= 0)
    part.insert_or_assign("batch_rows", Tensor::fromI32({static_cast<int64_t>(batchRows.size())},
                                                        std::vector<int32_t>(batchRows.begin(), batchRows.end())));
}

void DataParallelStep::computeGradients(const TensorMap *part, const TensorMap &store) {
  auto start = Clock::now();
  Communicator &comm = *dp_.comm;
  if (part) {
    dp_.gradients->runInto(*part, store, gradients_);
  } else {
    const ir::Graph &u = dp_.update->graph();
    for (const std::string &name : dp_.denseGradients)
      gradients_[name] = Tensor(ir::DType::F32, *ir::concreteShape(u.type(u.findInput(name)).shape, {}));
  }
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
  for (auto [first, last] : buckets_) {
    if (last - first == 1) {
      comm.sum(gradients_.at(dp_.denseGradients[first]).f32());
      continue;
    }
    size_t at = 0;
    for (size_t i = first; i < last; ++i) {
      auto g = gradients_.at(dp_.denseGradients[i]).f32();
      std::memcpy(packed_.data() + at, g.data(), g.size_bytes());
      at += g.size();
    }
    comm.sum(std::span<float>(packed_.data(), at));
    at = 0;
    for (size_t i = first; i < last; ++i) {
      auto g = gradients_.at(dp_.denseGradients[i]).f32();
      std::memcpy(g.data(), packed_.data() + at, g.size_bytes());
      at += g.size();
    }
  }
  comm.sum(totals);
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
      int64_t padded = roundedRows(k);
      gatheredIds_[t].resize(static_cast<size_t>(padded), gatheredIds_[t].front());
      gatheredRows_[t].resize(static_cast<size_t>(padded * width), 0.0f);
      k = padded;
    }
    updateInputs_.emplace(name + ".ids", Tensor::view(ir::DType::I32, {k}, gatheredIds_[t].data()));
    updateInputs_.emplace(name, Tensor::view(ir::DType::F32, {k, width}, gatheredRows_[t].data()));
  }
  updateInputs_.emplace("lr", scalar(static_cast<float>(lr)));
  updateInputs_.emplace("step", scalar(static_cast<float>(step)));
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
  return fmt::format("{} process{}, {} steps: {:.2f} ms per step = gradients {:.2f} + exchange {:.2f} ({:.2f} MB of "
                     "dense gradients summed in {} call{}{}) + update {:.2f}",
                     dp_.comm->size(), dp_.comm->size() == 1 ? "" : "es", totals_.steps, ms(totals_.gradientSeconds + totals_.exchangeSeconds +
                                                          totals_.updateSeconds),
                     ms(totals_.gradientSeconds), ms(totals_.exchangeSeconds),
                     static_cast<double>(totals_.denseBytes) / 1e6, buckets_.size(), buckets_.size() == 1 ? "" : "s", rows, ms(totals_.updateSeconds));
}

} // namespace kiln::runtime
