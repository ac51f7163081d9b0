//===- tools/report.h - kiln report and train --report -----------*- C++ -*-===//
//
// `kiln train --report DIR` writes DIR/metrics.jsonl as it trains
// (runtime/metrics_log.h) and DIR/index.html (tools/report_page.h) after
// every epoch and at the end; `kiln report DIR` draws the page again from
// the log, also for a run that was interrupted or resumed.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/metrics_log.h"
#include "runtime/output_guard.h"
#include "runtime/trainer.h"
#include "tools/report_page.h"

#include <optional>
#include <string>
#include <vector>

namespace kiln::tools {

/// DIR/metrics.jsonl and DIR/index.html of kiln train --report DIR.
class TrainingReport {
public:
  /// Checks DIR (creating it) and both files as outputs of train before any
  /// work (runtime/output_guard.h); `others` are train's other outputs,
  /// which neither file may be.
  TrainingReport(const std::string &dir, const std::vector<runtime::CommandInput> &inputs,
                 const std::vector<runtime::CommandInput> &others, bool force);

  /// Opens the log and has training write to it: the run line when it
  /// starts (`run` filled in with the run's length), a line per step and per
  /// epoch, and the page after every epoch.
  void attach(runtime::TrainConfig &config, runtime::RunRecord run);
  /// After training: the end line (when the run line was written) and the
  /// page.
  void finish(const std::string &status, const std::string &message, const runtime::Checkpoint &ckpt);

  const std::string &pagePath() const { return page_; }

private:
  void writePage();
  std::string metrics_, page_;
  bool replace_ = false, started_ = false;
  std::optional<runtime::MetricsWriter> writer_;
};

/// The UTC time now, ISO 8601 (for RunRecord::started).
std::string utcNow();

} // namespace kiln::tools
