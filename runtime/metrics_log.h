//===- runtime/metrics_log.h - a training run's metrics as JSON Lines -*- C++ -*-===//
//
// `kiln train --report DIR` appends one JSON object per line to
// DIR/metrics.jsonl as it trains, and `kiln report DIR` (tools/report.h)
// draws the page from it. Each line has a "kind":
//   run    written when a run starts, fresh or resumed: the model, labels,
//          recipe, where the run starts (start_step, start_epoch) and how
//          long it is (batches_per_epoch, total_steps)
//   step   after each applied step: step, epoch, batch, loss, lr, examples,
//          tokens; the loss is the very float --loss-log prints
//   epoch  after each epoch: training time, tokens and examples, and with
//          validation data its loss, accuracy, macro-F1 and confusion matrix
//   end    when the run stops with a result: finished, stopped (--max-steps
//          or early stopping) or failed (with the error)
// Each line is flushed as it is written, so a run killed at any point
// leaves every earlier line readable; a writer that finds the file ending
// in a cut-off line starts on a new line.
//
// The file is only ever appended to, as --loss-log is; what it shows is
// decided when reading (readMetricsLog): a fresh run's `run` line starts
// the run over, and a resumed run's drops the records of steps and epochs
// after its checkpoint's position, which an interrupted run may have
// logged beyond its last checkpoint and which the resumed run redoes. So
// every step appears once, with the value of the run that continued.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::runtime {

/// The format name in every `run` line; the reader refuses others.
inline constexpr const char *kMetricsFormat = "kiln-metrics-1";

struct RunRecord {
  std::string model;                         ///< the model file as given to kiln train
  std::string resumedFrom;                   ///< the --resume checkpoint; empty for a fresh run
  int64_t startStep = 0, startEpoch = 0, startBatch = 0; ///< the position the run starts at (steps, epochs, batches done)
  int64_t epochs = 0, batchesPerEpoch = 0, totalSteps = 0;
  int64_t trainExamples = 0, validExamples = 0, parameters = 0;
  std::vector<std::string> labels;
  std::map<std::string, std::string> recipe; ///< the checkpoint's training configuration
  std::string started;                       ///< UTC time, ISO 8601
};

struct StepRecord {
  int64_t step = 0, epoch = 0, batch = 0; ///< 1-based
  double loss = 0;                        ///< the step's mean cross-entropy (an f32 value)
  double lr = 0;                          ///< the learning rate the step used (schedule and plateau decay)
  int64_t examples = 0, tokens = 0;       ///< in the batch (tokens: unpadded)
};

struct EpochRecord {
  int64_t epoch = 0, step = 0; ///< the epoch (1-based) and the last step in it
  /// What this process trained of the epoch: a resumed run starts in the
  /// middle of one (`partial`), its rates are those of its part.
  int64_t steps = 0, examples = 0, tokens = 0;
  double seconds = 0; ///< training time of those steps (validation excluded)
  double trainLoss = 0, trainAccuracy = 0;
  bool partial = false;
  bool validated = false; ///< whether the fields below are set
  double validLoss = 0, accuracy = 0, macroF1 = 0;
  std::vector<std::string> labels;             ///< the run's labels, so that each line reads on its own
  std::vector<std::vector<int64_t>> confusion; ///< [true label][predicted label]
  bool best = false;  ///< the best epoch so far by --select-by
  double lrScale = 1; ///< the plateau decays so far
};

struct EndRecord {
  int64_t step = 0, epoch = 0;
  std::string status;  ///< "finished", "stopped" or "failed"
  std::string message; ///< why it stopped or failed; empty when finished
};

/// One line of the file, as written.
std::string metricsLine(const RunRecord &r);
std::string metricsLine(const StepRecord &r);
std::string metricsLine(const EpochRecord &r);
std::string metricsLine(const EndRecord &r);

/// Appends records to a metrics file, flushing each line.
class MetricsWriter {
public:
  /// Opens `path` for appending, creating it; with `replace` it starts
  /// empty. kiln::Error naming the file when it cannot be opened.
  MetricsWriter(const std::string &path, bool replace);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter &) = delete;
  MetricsWriter &operator=(const MetricsWriter &) = delete;

  template <typename Record> void write(const Record &r) { append(metricsLine(r)); }
  const std::string &path() const { return path_; }

private:
  void append(const std::string &line);
  std::string path_;
  std::FILE *file_ = nullptr;
};

/// A run as one file shows it: the records of the run that the last
/// `run` line continues, one per step and per epoch, in order.
struct MetricsLog {
  /// The `run` lines that make up the run: first the one it started with
  /// (a fresh run, or the first resumed one the file has), then each resume.
  std::vector<RunRecord> runs;
  std::vector<StepRecord> steps;   ///< ascending by step, each step once
  std::vector<EpochRecord> epochs; ///< ascending by epoch, each epoch once
  std::optional<EndRecord> end;    ///< the end line of the last run, if it wrote one
  /// Lines that were not read: cut off by a killed writer ("FILE:LINE: ...").
  std::vector<std::string> skipped;
  /// Whether the file holds records of other runs before this one.
  bool earlierRuns = false;

  const RunRecord &last() const { return runs.back(); }
};

/// Reads a metrics file. kiln::Error naming the file (and line) when it
/// cannot be read, does not start with a `run` line of this format, or has
/// a complete line that is not a valid record; a line that is not JSON is
/// skipped (and listed in `skipped`) when it is the last line and lacks its
/// newline, or when the next line is a `run` line: that is what a killed
/// writer leaves.
MetricsLog readMetricsLog(const std::string &path);
/// The same for the text of a file; `name` names it in errors.
MetricsLog parseMetricsLog(std::string_view text, const std::string &name);

} // namespace kiln::runtime
