//===- runtime/trainer.h - the training loop and evaluation -----*- C++ -*-===//
//
// train() runs epochs of seeded, shuffled, padded batches through a compiled
// training step (passes/training.h), keeping parameters and optimizer state
// in a parameter store, with a learning-rate schedule, a live progress line,
// per-epoch validation, and atomic checkpoints (at the end of every epoch,
// every `saveEvery` steps, and at the end). A run restarted from a
// checkpoint continues exactly: batch order depends only on (seed, epoch),
// and the store, step and position come from the checkpoint.
//
// evaluate() runs the forward graph over a dataset and accumulates a
// confusion matrix and the mean cross-entropy.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/checkpoint.h"
#include "runtime/data.h"
#include "runtime/distributed.h"
#include "runtime/executable.h"
#include "runtime/metrics.h"
#include "runtime/metrics_log.h"

#include <cstdio>
#include <functional>
#include <string>

namespace kiln::runtime {

struct TrainConfig {
  int64_t epochs = 5;
  int64_t batchSize = 64;
  double lr = 1e-3;
  /// "constant", or "linear": warm up linearly over warmupSteps, then decay
  /// linearly to 0 at the last step.
  std::string schedule = "constant";
  int64_t warmupSteps = 0;
  uint64_t seed = 0;
  bool shuffle = true;
  int64_t saveEvery = 0;     ///< also checkpoint every N steps (0: only per epoch)
  int64_t maxSteps = 0;      ///< stop (and checkpoint) once this many steps are done; 0: no limit
  std::string checkpointPath; ///< empty: no checkpoints
  std::string lossLog;        ///< if set, `step loss` per line is appended here
  int64_t evalBatchSize = 256;
  /// Model selection on the validation data, after every epoch: "" (none:
  /// the model is the last step's), "loss" (lowest validation loss),
  /// "accuracy" or "macro-f1" (highest; ties keep the earlier epoch). The
  /// checkpoint's model is then the best epoch's (Checkpoint::selected),
  /// and these apply:
  std::string selectBy;
  int64_t patience = 0;       ///< stop after this many epochs without a better score (0: never)
  double plateauDecay = 1;    ///< multiply the learning rate by this after each
  int64_t plateauPatience = 1; ///< ... this many epochs without a better score (decay 1: off)
  /// Runs the training step on these inputs and store keeping every value
  /// (the driver uses the reference interpreter) and returns the first node
  /// whose result holds NaN or infinity, or -1. Called only once a step
  /// has gone non-finite, to name the op and its DSL line in the error;
  /// without it the error names only the step.
  std::function<ir::NodeId(const TensorMap &inputs, const TensorMap &store)> firstNonFiniteNode;
  /// What the run does, as it does it (kiln train --report writes it to a
  /// metrics log, runtime/metrics_log.h): onStart once before the first
  /// step, with the run's length; onStep after each applied step (as the
  /// loss log); onEpoch after each epoch's validation. An exception they
  /// throw ends training like any error.
  std::function<void(int64_t batchesPerEpoch, int64_t totalSteps)> onStart;
  std::function<void(const StepRecord &)> onStep;
  std::function<void(const EpochRecord &)> onEpoch;
  /// Data-parallel training (runtime/distributed.h): the step runs as its
  /// two graphs with the gradients summed over the processes in between,
  /// instead of trainStep. Every process calls train() alike; only rank 0
  /// writes the checkpoint and the loss log, and the callbacks above are
  /// called on every rank (the caller gives rank 0's only).
  const DataParallel *dataParallel = nullptr;
};

struct EvalResult {
  ConfusionMatrix confusion{1};
  double meanLoss = 0;
  int64_t examples = 0;
};

/// Learning rate of 1-based `step` out of `totalSteps` (before any plateau decay).
double scheduledLr(const TrainConfig &config, int64_t step, int64_t totalSteps);

/// The --select-by score of a validation result (lower is better for
/// "loss", higher for the others); kiln::Error for an unknown name.
double selectionScore(const std::string &selectBy, const EvalResult &valid);
bool scoreImproves(const std::string &selectBy, double score, double best);

/// Runs the forward graph (first output = logits f32[B,C]) over data. With
/// `comm`, each process runs its contiguous part of the data and all get
/// the result of the whole.
EvalResult evaluate(Executable &forward, const TensorMap &params, const EncodedData &data, int64_t batchSize,
                    Communicator *comm = nullptr);

/// Trains from the state in `ckpt` (its tensors are the parameter store:
/// model parameters and optimizer state; epoch/batch/step say where to
/// start) and leaves the final state there. `out` receives progress.
///
/// Divergence: a step whose loss is not finite, or whose update makes a
/// model parameter non-finite, is not applied; training stops with a
/// kiln::Error naming the step and (with firstNonFiniteNode) the first op
/// that produced NaN or infinity, at its DSL location, and the last
/// checkpoint written stays as it was. Checking the parameters costs one
/// pass over them per step (0.37 ms for 2.6M floats in a microbenchmark on
/// this VM; not yet measured in bench/).
void train(Executable &trainStep, Executable &forward, const TrainConfig &config, const EncodedData &trainData,
           const EncodedData *validData, Checkpoint &ckpt, std::FILE *out);

} // namespace kiln::runtime
