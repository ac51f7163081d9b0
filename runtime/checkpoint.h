//===- runtime/checkpoint.h - training checkpoints --------------*- C++ -*-===//
//
// A checkpoint is one safetensors file: every model parameter under its
// PyTorch state_dict name (so `safetensors.torch.load_file` + filtering out
// the `optimizer.` prefix gives a loadable state_dict), the optimizer state
// under `optimizer.<param>.<state>`, and in the metadata everything needed to
// evaluate, predict and resume exactly: the vocabulary, the label names, the
// model source text, the hyper-parameters, the training configuration and
// the position in the run (epoch, batch within the epoch, global step).
// Saving is atomic (runtime/safetensors.h), so a crash mid-save leaves the
// previous checkpoint intact. Loading validates the metadata and reports
// every problem as kiln::Error naming the file.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/tensor.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kiln::runtime {

struct Checkpoint {
  /// Parameters and optimizer state by name.
  std::map<std::string, Tensor> tensors;

  std::vector<std::string> vocab;  ///< id -> token, vocab[0] == "<pad>", vocab[1] == "<unk>"
  std::vector<std::string> labels; ///< class index -> label name
  std::string modelSource;         ///< the .kiln text the model was compiled from
  std::string modelFile;           ///< its path when trained (informational)
  /// Hyper-parameter values the model was compiled with (`--param`s, plus
  /// vocab/classes derived from the data), as text.
  std::map<std::string, std::string> hyperParams;
  /// Training configuration as flat key -> value text (optimizer, lr,
  /// batch, max_len, seed, epochs, schedule, ...), enough to resume.
  std::map<std::string, std::string> config;

  int64_t epoch = 0; ///< epochs completed
  int64_t batch = 0; ///< batches completed within the current epoch
  int64_t step = 0;  ///< optimizer steps completed in total
};

/// Writes atomically (temp file, fsync, rename).
void saveCheckpoint(const std::string &path, const Checkpoint &ckpt);

/// Reads and validates; kiln::Error naming the file for a missing or
/// malformed metadata field, and for anything runtime/safetensors.h rejects.
Checkpoint loadCheckpoint(const std::string &path);

/// Splits tensors into model parameters and optimizer state (`optimizer.` prefix).
std::map<std::string, Tensor> modelTensors(const Checkpoint &ckpt);

} // namespace kiln::runtime
