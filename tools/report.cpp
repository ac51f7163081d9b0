//===- tools/report.cpp - kiln report, and train --report's files ---------===//
//
// kiln train --report DIR: DIR checked and created before any work, the
// metrics log appended from the trainer's callbacks, the page rewritten
// after every epoch and at the end, always from the log on disk (so that it
// is the page kiln report would draw). kiln report DIR: the page again.
//
//===----------------------------------------------------------------------===//
#include "tools/report.h"

#include "ir/diagnostic.h"
#include "tools/cli.h"
#include "tools/commands.h"

#include <ctime>
#include <filesystem>
#include <fmt/format.h>

namespace kiln::tools {

namespace fs = std::filesystem;

// --- train --report -----------------------------------------------------------------

std::string utcNow() {
  std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

TrainingReport::TrainingReport(const std::string &dir, const std::vector<runtime::CommandInput> &inputs,
                               const std::vector<runtime::CommandInput> &others, bool force)
    : metrics_((fs::path(dir) / "metrics.jsonl").string()), page_((fs::path(dir) / "index.html").string()) {
  if (dir.empty()) throw Error("--report needs a directory name");
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw Error(fmt::format("--report {} is a file, not a directory; the report is a directory of two files "
                            "(metrics.jsonl and index.html)",
                            dir));
  // As kiln export's -o DIR: the directories it needs are made (runs/a).
  if (!fs::exists(dir, ec) && !fs::create_directories(dir, ec))
    throw Error(fmt::format("cannot create the --report directory '{}': {}", dir, ec.message()));
  for (const runtime::CommandInput &o : others) {
    if (o.path.empty()) continue;
    for (const std::string &mine : {metrics_, page_})
      if (fs::weakly_canonical(o.path, ec) == fs::weakly_canonical(mine, ec))
        throw Error(fmt::format("{} {} is one of the files of --report {}", o.role, o.path, dir));
  }
  runtime::checkOutput("--report", metrics_, runtime::OutputKind::MetricsLog, inputs, force);
  runtime::checkOutput("--report", page_, runtime::OutputKind::Page, inputs, force);
  // With --force a file of another kind is replaced rather than appended to.
  std::string held = runtime::describeFile(metrics_);
  replace_ = held != "nothing" && held != "an empty file" && held != "a kiln metrics log";
}

void TrainingReport::attach(runtime::TrainConfig &config, runtime::RunRecord run) {
  writer_.emplace(metrics_, replace_);
  config.onStart = [this, run](int64_t batchesPerEpoch, int64_t totalSteps) {
    runtime::RunRecord r = run;
    r.batchesPerEpoch = batchesPerEpoch;
    r.totalSteps = totalSteps;
    writer_->write(r);
    started_ = true;
  };
  config.onStep = [this](const runtime::StepRecord &s) { writer_->write(s); };
  config.onEpoch = [this](const runtime::EpochRecord &e) {
    writer_->write(e);
    writePage();
  };
}

void TrainingReport::writePage() { runtime::writeFileAtomic(page_, reportPage(runtime::readMetricsLog(metrics_))); }

void TrainingReport::finish(const std::string &status, const std::string &message, const runtime::Checkpoint &ckpt) {
  // A run that failed before its first step wrote nothing: its end line
  // would end the previous run in the file.
  if (!started_) return;
  writer_->write(runtime::EndRecord{ckpt.step, ckpt.epoch, status, message});
  writePage();
}

// --- kiln report ------------------------------------------------------------------------

int cmdReport(int argc, char **argv) {
  std::string dir;
  std::optional<std::string> output;
  bool force = false;
  cli::Command cmd("report", "DIR [-o FILE]",
                   "Draws the page of a training run, DIR/index.html, from DIR/metrics.jsonl, which\n"
                   "kiln train --report DIR writes as it trains: the training loss per step (raw and\n"
                   "smoothed, epochs marked), the loss and validation accuracy and macro-F1 per\n"
                   "epoch, the learning rate, and the validation confusion matrix. Also for a run\n"
                   "that was interrupted or resumed: each step shows once, with the value of the run\n"
                   "that continued. The page is one HTML file with nothing to fetch.");
  cmd.positional("DIR", dir, "the directory of kiln train --report (or its metrics.jsonl)");
  cmd.option("-o,--output", output, "FILE", "where to write the page").defaultText("DIR/index.html");
  cmd.flag("--force", force, "replace FILE when it exists and is not a page kiln report wrote");
  if (!cmd.parse(argc, argv, 2)) return 0;
  std::error_code ec;
  if (!fs::exists(dir, ec))
    throw Error(fmt::format("{} does not exist; kiln report takes the directory of kiln train --report DIR", dir));
  bool isDir = fs::is_directory(dir, ec);
  std::string metrics = isDir ? (fs::path(dir) / "metrics.jsonl").string() : dir;
  std::string page = output.value_or(
      isDir ? (fs::path(dir) / "index.html").string() : (fs::path(dir).parent_path() / "index.html").string());
  runtime::checkOutput(output ? "-o" : "the page", page, runtime::OutputKind::Page,
                       {{"DIR", metrics}}, force);
  runtime::MetricsLog log = runtime::readMetricsLog(metrics);
  for (const std::string &s : log.skipped) fmt::print(stderr, "note: {}; skipped\n", s);
  runtime::writeFileAtomic(page, reportPage(log));
  fmt::print("{}: {} step{}, {} epoch{}\n", page, log.steps.size(), log.steps.size() == 1 ? "" : "s",
             log.epochs.size(), log.epochs.size() == 1 ? "" : "s");
  return 0;
}

} // namespace kiln::tools
