//===- runtime/data_shard.h - each process's part of the data --*- C++ -*-===//
//
// In a data-parallel run each process reads only its own part of a data
// file, yet the run must see the data as one process does: the same
// examples in the same order, the same validation split, vocabulary and
// labels, and the same batches. So the parts are cut by position in the
// file: process r of N owns the lines that start in bytes
// [size * r / N, size * (r + 1) / N), and the concatenation of the parts in
// rank order is the file. Everything that one process computes from the
// whole data is computed from small facts the processes exchange once:
//   - each part's example and line counts: the index in the file of every
//     example, and the line numbers that messages name;
//   - the split: every process draws the split's permutation of all N
//     examples (splitOrder) and keeps the training and validation examples
//     it owns;
//   - the vocabulary from the token counts added up, the labels from the
//     union of the names;
//   - the batches: every process draws the epoch's permutation of all
//     training examples and, for each batch, takes the rows it owns
//     (TrainShard); each training example's length and whether its label
//     counts are gathered once, so that every process pads its rows to the
//     length of the whole batch and scales its loss by its share of it.
// A CSV record's start cannot be found from the middle of a file (a quoted
// field may hold line ends), so a CSV file is read whole by every process,
// which then keeps an equal run of the records.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/data.h"
#include "runtime/distributed.h"

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::runtime {

/// A process's examples of one file.
struct FileShard {
  std::vector<RawExample> examples; ///< this process's, in file order
  size_t first = 0;                 ///< the index in the whole file of examples[0]
  size_t total = 0;                 ///< the whole file's examples
};

/// Reads this process's part of a file (see above). `stats` comes back
/// with the whole file's counts and problems on every process. kiln::Error
/// as readExamples, from the process that read the bad record; "no
/// examples" on every process when the whole file has none.
FileShard readFileShard(const std::string &path, const ReadOptions &options, ReadStats &stats, Communicator &comm);

/// A process's training and validation examples.
struct ShardSplit {
  std::vector<RawExample> train, valid; ///< this process's, each in file order
  /// The whole run's training examples, by training index (the index
  /// epochOrder permutes): each one's index in the file.
  std::vector<size_t> trainFileIndex;
  /// This process's training examples' indices in the file.
  std::vector<size_t> ownTrainFileIndex;
  size_t fileFirst = 0, fileCount = 0; ///< the part of the file this process owns
  size_t fileTotal = 0;                ///< the whole file's examples
  size_t validTotal = 0;               ///< validation examples of all processes
};

/// The split splitExamples makes of the whole file, as each process's
/// part (validFraction 0: all of it for training, as for a --valid file).
ShardSplit splitShard(FileShard &&data, double validFraction, uint64_t seed, bool shuffle);

/// Vocabulary::build of all processes' training examples.
Vocabulary sharedVocabulary(const std::vector<RawExample> &ownTrain, size_t maxSize, size_t minFreq,
                            Communicator &comm);

/// LabelSet::fromNames of all processes' label names.
LabelSet sharedLabels(const std::vector<std::string> &ownNames, Communicator &comm);

/// What a process needs to know of the training examples it does not own:
/// their lengths and whether their labels count. `train` holds the
/// process's own training examples encoded, in the order of
/// split.ownTrainFileIndex.
TrainShard trainShard(const ShardSplit &split, const EncodedData &train, Communicator &comm);

} // namespace kiln::runtime
