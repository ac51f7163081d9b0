//===- runtime/distributed.h - data-parallel training across processes -*- C++ -*-===//
//
// kiln trains data-parallel on MPI: `mpirun -np N kiln train ...` starts N
// processes (ranks) that each hold the whole model. Every global batch is
// cut into N contiguous parts, one per rank; each rank runs the forward and
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

#include <cstdint>
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
  /// Whether every rank passed the same value.
  virtual bool same(uint64_t value) = 0;
};

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
    std::string ids, gradientRows;
  };
  std::vector<Rows> rowTables;
};

} // namespace kiln::runtime
