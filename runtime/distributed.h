//===- runtime/distributed.h - data-parallel training across processes -*- C++ -*-===//
//
// kiln trains data-parallel on MPI: `mpirun -np N kiln train ...` starts N
// processes (ranks) that each hold the whole model and read their own part
// of the data (runtime/data_shard.h). Each rank takes the rows of every
// global batch that it holds; it runs the forward and
// backward pass on its part, the ranks sum their gradients with MPI, and
// every rank applies the same optimizer update to the same parameters, so
// the parameters stay identical without ever being sent.
//
// A Communicator is what the training loop needs of MPI; runtime/mpi.cpp
// implements it (the only file that includes mpi.h), so the runtime does
// not depend on MPI and a test can substitute its own.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/executable.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace kiln::runtime {

class Communicator {
public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Replaces `values` on every rank by their elementwise sum over the
  /// ranks. For a given number of ranks and length, the order of the
  /// additions is fixed, so the same inputs give the same bits.
  virtual void sum(std::span<float> values) = 0;
  virtual void sum(std::span<double> values) = 0;
  /// Every rank's `mine`, concatenated in rank order, on every rank.
  virtual void gather(std::span<const int32_t> mine, std::vector<int32_t> &all) = 0;
  virtual void gather(std::span<const float> mine, std::vector<float> &all) = 0;
  virtual void gather(std::span<const char> mine, std::vector<char> &all) = 0;
  /// Whether every rank passed the same value.
  virtual bool same(uint64_t value) = 0;
  /// Starts summing `values` as sum() does (in an order fixed by the
  /// number of ranks and the length, though not necessarily sum()'s) and
  /// returns at once; the values must stay untouched until finishSums().
  /// Every rank starts the same sums in the same order, and may make
  /// other calls in the meantime, all ranks in the same order.
  virtual void startSum(std::span<float> values) = 0;
  /// Lets the started sums advance: MPI moves them on only inside its own
  /// calls.
  virtual void progressSums() = 0;
  /// Waits for every started sum.
  virtual void finishSums() = 0;
};

/// n (at least 1) rounded up to one of `sizes` evenly spaced sizes per
/// power of two: a multiple of 2^j / sizes for n in [2^j, 2^(j+1)), so at
/// most 1/sizes more. A count of rows that varies from step to step is
/// rounded so, since every count is a plan of its own (for the llvm
/// backend a compiled module): the gathered table rows of a step (2 sizes:
/// 2^j or 1.5 * 2^j) and a process's rows of a batch (8 sizes).
int64_t roundUpToFewSizes(int64_t n, int64_t sizes);

/// Whether this process was started by mpirun (or another MPI launcher).
bool launchedByMpi();

/// Starts MPI (once per process) and returns the world communicator.
/// kiln::Error when MPI cannot start. `finishMpi` ends it after a run that
/// succeeded; after an error a rank exits without it, and mpirun ends the
/// other ranks (rather than leaving them waiting on a sum that will not
/// come).
Communicator &startMpi();
void finishMpi();
/// Whether startMpi() has run in this process.
bool mpiStarted();
/// Worker threads for one rank when the user gave none: the machine's
/// cores shared among the ranks the launcher put on it (at least 1).
int threadsPerRank();

/// The training examples of a data-parallel run as one process sees them
/// (runtime/data_shard.h): every process holds the encoded examples it owns
/// and these facts of all of them, by training index.
struct TrainShard {
  std::vector<int64_t> local;   ///< the example's row in this process's data, or -1 when another owns it
  std::vector<int32_t> length;  ///< its token ids' count
  std::vector<uint8_t> counted; ///< whether its label counts in the loss (label >= 0)
  size_t validTotal = 0;        ///< validation examples of all processes
};

/// The two graphs of a data-parallel step (passes::SplitStep) compiled,
/// and what the loop exchanges between them.
struct DataParallel {
  Communicator *comm = nullptr;
  Executable *gradients = nullptr; ///< the rank's share of the batch -> loss, logits, gradients
  Executable *update = nullptr;    ///< the summed gradients -> the new parameters and state
  /// `grad.<param>` outputs of `gradients`, summed densely.
  std::vector<std::string> denseGradients;
  /// Tables whose gradient is sent as rows: the step input with the ids,
  /// and the output (and update input) with the rows' gradient.
  struct Rows {
    std::string ids, gradientRows, param;
  };
  std::vector<Rows> rowTables;
  /// The training data's facts (kiln train sets it; kiln bench has none).
  const TrainShard *shard = nullptr;
};

/// One data-parallel training step in its two halves, as `kiln train` and
/// `kiln bench` run it. Every rank calls both halves once per step, in
/// step: the second makes collective calls.
class DataParallelStep : private Executable::RunObserver {
public:
  explicit DataParallelStep(const DataParallel &dp);
  ~DataParallelStep() override;
  DataParallelStep(const DataParallelStep &) = delete;
  DataParallelStep &operator=(const DataParallelStep &) = delete;
  /// Adds what the gradient graph takes besides the batch: `loss_scale`
  /// (this part's share of the global batch's counted rows), and where the
  /// graph has them, `step` and `batch_rows` (for dropout: which row of
  /// the global batch each row of the part is).
  void addStepInputs(TensorMap &part, double share, int64_t step, std::span<const int32_t> batchRows) const;
  /// Runs the gradient graph on this rank's part of the batch (its inputs
  /// complete), or makes zero gradients when `part` is null (a last batch
  /// with fewer rows than ranks). The sums of the dense gradients start
  /// as the gradients become final, while the backward pass still runs,
  /// where the backend says when (runtime::Executable::observeRuns), and
  /// after it otherwise; the tables' rows are gathered after it.
  void computeGradients(const TensorMap *part, const TensorMap &store);
  /// The gradient graph's outputs: `loss` (this part's), the logits, and
  /// the gradients (summed in place by update()).
  TensorMap &gradientOutputs() { return gradients_; }
  /// Sums the dense gradients (in buckets: consecutive small tensors
  /// packed into one sum) and gathers the tables' rows, sums `totals` along,
  /// and runs the update graph into `outputs` (runInto's contract).
  void update(std::span<double> totals, double lr, int64_t step, const TensorMap &store, TensorMap &outputs);
  /// update() in its two parts: the sums (collective), then the update
  /// graph. exchange() without computeGradients() before it sums the
  /// gradients as they are (kiln bench times the exchange alone so).
  void exchange(std::span<double> totals);
  void applyUpdate(double lr, int64_t step, const TensorMap &store, TensorMap &outputs);
  /// The update graph's inputs of the last step (the gathered ids, for the
  /// trainer's check of rows updated in place).
  const TensorMap &updateInputs() const { return updateInputs_; }

  /// Time spent in each part, summed over steps, and what was sent.
  struct Totals {
    int64_t steps = 0;
    double gradientSeconds = 0, exchangeSeconds = 0, updateSeconds = 0;
    int64_t denseBytes = 0; ///< per step: the dense gradients summed
    int64_t rowBytes = 0;   ///< summed over steps: what this rank sent of the tables' gradients (rows or dense)
    int64_t tableBytes = 0; ///< the tables whose rows are gathered, as dense tensors
    int64_t sumsDuringBackward = 0; ///< summed over steps: dense sums started before the gradient graph returned
  };
  const Totals &totals() const { return totals_; }
  /// Starts the times and row bytes again (after warm-up steps).
  void resetTotals() {
    totals_.steps = 0;
    totals_.gradientSeconds = totals_.exchangeSeconds = totals_.updateSeconds = 0;
    totals_.rowBytes = 0;
    totals_.sumsDuringBackward = 0;
  }
  /// `N processes, S steps: X ms per step = gradients G + exchange E (...) + update U`.
  std::string summary() const;

private:
  void outputFinal(const std::string &name, const Tensor &value) override;
  void stepDone() override;
  /// Copies dense gradient i into its bucket; starts the buckets now full.
  void gradientFinal(size_t i, std::span<const float> value);
  /// Starts the sums of the full buckets, in bucket order (every rank
  /// starts the same sums in the same order).
  void startFullBuckets();
  /// Empties the buckets for a new step's gradients.
  void newSums();
  /// Copies in every gradient not yet copied (from gradients_) and so
  /// starts every sum.
  void startRemainingSums();

  const DataParallel &dp_;
  TensorMap gradients_, updateInputs_;
  std::vector<std::vector<int32_t>> gatheredIds_;
  std::vector<std::vector<float>> gatheredRows_;
  /// The dense gradients' sums, in the order the backward pass finishes
  /// them: a gradient of at least kBucketBytes alone, runs of smaller ones
  /// packed together up to that size.
  struct Bucket {
    std::vector<size_t> gradients; ///< indices into dp_.denseGradients
    std::vector<size_t> offsets;   ///< of each in `sum`
    std::vector<float> sum;        ///< the gradients copied in, then their sum
    size_t ready = 0;              ///< how many are in, this step
  };
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> slot_; ///< per dense gradient: (bucket, position in it)
  std::map<std::string, size_t> denseIndex_;    ///< dense gradient name -> index
  std::vector<bool> copied_;                    ///< per dense gradient: in its bucket this step
  size_t nextBucket_ = 0;                       ///< the first bucket whose sum has not started
  bool summing_ = false;                        ///< sums started and not yet finished
  bool inBackward_ = false;                     ///< the gradient graph is running
  bool observed_ = false;                       ///< the backend reports gradients as they are final
  std::chrono::steady_clock::time_point lastProgress_;
  std::vector<std::pair<int64_t, int64_t>> tableShapes_; ///< [V, E] of each row table
  std::vector<float> denseTable_;                       ///< a table's gradient summed densely
  Totals totals_;
};

} // namespace kiln::runtime
