//===- tests/unit/metrics_log_test.cpp - train --report's metrics log -----===//
//
// runtime/metrics_log.h: records read back as written (a step's f32 loss
// exactly); a resumed run replaces what it redoes, a fresh run starts
// over, a resumed run of another recipe too; what a killed writer leaves
// (a cut-off line at the end, or before the next run's first line) is
// skipped and anything else malformed is an error naming file, line and
// field; the writer starts a new line after a cut-off one; the output guard
// knows a metrics log and a report page.
//
//===----------------------------------------------------------------------===//
#include "runtime/metrics_log.h"
#include "runtime/output_guard.h"

#include "ir/diagnostic.h"

#include <doctest/doctest.h>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace kiln;
using namespace kiln::runtime;
namespace fs = std::filesystem;

namespace {

RunRecord run(int64_t startStep = 0, const std::string &resumedFrom = "") {
  RunRecord r;
  r.model = "m.kiln";
  r.resumedFrom = resumedFrom;
  r.startStep = startStep;
  r.startEpoch = startStep / 4;
  r.startBatch = startStep % 4;
  r.epochs = 3;
  r.batchesPerEpoch = 4;
  r.totalSteps = 12;
  r.labels = {"ham", "spam"};
  r.recipe = {{"lr", "0.001"}, {"epochs", "3"}, {"batch", "16"}};
  r.started = "2026-01-02T03:04:05Z";
  return r;
}

StepRecord step(int64_t s, double loss) { return {s, (s - 1) / 4 + 1, (s - 1) % 4 + 1, loss, 0.001, 16, 200}; }

EpochRecord epoch(int64_t e) {
  EpochRecord r;
  r.epoch = e;
  r.step = 4 * e;
  r.steps = 4;
  r.examples = 64;
  r.tokens = 800;
  r.seconds = 0.5;
  r.trainLoss = 0.5;
  r.trainAccuracy = 0.75;
  r.validated = true;
  r.validLoss = 0.4;
  r.accuracy = 0.8;
  r.macroF1 = 0.79;
  r.labels = {"ham", "spam"};
  r.confusion = {{4, 1}, {1, 4}};
  return r;
}

template <typename... Records> std::string lines(const Records &...records) {
  return ((metricsLine(records) + "\n") + ...);
}

std::vector<int64_t> stepsOf(const MetricsLog &log) {
  std::vector<int64_t> out;
  for (const StepRecord &s : log.steps) out.push_back(s.step);
  return out;
}

} // namespace

TEST_CASE("metrics log: records read back as written") {
  RunRecord r = run(5, "x.ckpt");
  float loss = 0.693147182f; // an f32, as the training step returns it
  EndRecord end{12, 3, "finished", ""};
  MetricsLog log = parseMetricsLog(lines(r, step(6, loss), epoch(2), end), "m.jsonl");
  REQUIRE(log.runs.size() == 1);
  const RunRecord &back = log.runs[0];
  CHECK(back.model == r.model);
  CHECK(back.resumedFrom == "x.ckpt");
  CHECK(back.startStep == 5);
  CHECK(back.startEpoch == 1);
  CHECK(back.startBatch == 1);
  CHECK(back.totalSteps == 12);
  CHECK(back.labels == r.labels);
  CHECK(back.recipe == r.recipe);
  CHECK(back.started == r.started);
  REQUIRE(log.steps.size() == 1);
  CHECK(log.steps[0].step == 6);
  CHECK(log.steps[0].epoch == 2);
  CHECK(log.steps[0].batch == 2);
  // The very f32, so that the page and --loss-log (9 digits) agree.
  CHECK(static_cast<float>(log.steps[0].loss) == loss);
  CHECK(fmt::format("{:.9g}", static_cast<float>(log.steps[0].loss)) == fmt::format("{:.9g}", loss));
  CHECK(log.steps[0].tokens == 200);
  REQUIRE(log.epochs.size() == 1);
  CHECK(log.epochs[0].validated);
  CHECK(log.epochs[0].confusion == epoch(2).confusion);
  CHECK(log.epochs[0].macroF1 == 0.79);
  REQUIRE(log.end);
  CHECK(log.end->status == "finished");
  CHECK(log.skipped.empty());

  // An epoch without validation data has no validation fields.
  EpochRecord plain = epoch(1);
  plain.validated = false;
  CHECK(metricsLine(plain).find("valid_loss") == std::string::npos);
  CHECK_FALSE(parseMetricsLog(lines(run(), plain), "m").epochs[0].validated);
}

TEST_CASE("metrics log: a resumed run replaces the steps and epochs it redoes") {
  // The first run logged steps 1-6 and epoch 1, then was killed; its last
  // checkpoint was at step 3 (epoch 1 not done). The resumed run redoes 4-6.
  std::string text = lines(run(), step(1, 0.9), step(2, 0.8), step(3, 0.7), step(4, 9.0), epoch(1), step(5, 9.0),
                           step(6, 9.0));
  text += lines(run(3, "m.ckpt"), step(4, 0.6), epoch(1), step(5, 0.5));
  MetricsLog log = parseMetricsLog(text, "m");
  CHECK(stepsOf(log) == std::vector<int64_t>{1, 2, 3, 4, 5});
  CHECK(log.steps[3].loss == 0.6); // the resumed run's, not the killed run's 9.0
  CHECK(log.steps[4].loss == 0.5);
  CHECK(log.epochs.size() == 1);
  CHECK(log.runs.size() == 2);
  CHECK_FALSE(log.earlierRuns);
  CHECK_FALSE(log.end); // the resumed run has not ended

  // A resume from the end of epoch 1 keeps epoch 1's record.
  text = lines(run(), step(4, 0.4), epoch(1), step(5, 9.0)) + lines(run(4, "m.ckpt"), step(5, 0.3));
  log = parseMetricsLog(text, "m");
  CHECK(log.epochs.size() == 1);
  CHECK(log.steps.back().loss == 0.3);
}

TEST_CASE("metrics log: a fresh run, or a resumed run of another recipe, starts over") {
  EndRecord end{2, 1, "finished", ""};
  MetricsLog log = parseMetricsLog(lines(run(), step(1, 0.9), step(2, 0.8), end, run(), step(1, 0.7)), "m");
  CHECK(stepsOf(log) == std::vector<int64_t>{1});
  CHECK(log.steps[0].loss == 0.7);
  CHECK(log.earlierRuns);
  CHECK_FALSE(log.end); // the first run's end is not this run's

  RunRecord other = run(1, "other.ckpt");
  other.recipe["lr"] = "0.5";
  log = parseMetricsLog(lines(run(), step(1, 0.9), other, step(2, 0.8)), "m");
  CHECK(stepsOf(log) == std::vector<int64_t>{2});
  CHECK(log.earlierRuns);
  CHECK(log.runs.size() == 1);

  // --epochs may grow on --resume: still the same run.
  RunRecord longer = run(2, "m.ckpt");
  longer.recipe["epochs"] = "5";
  log = parseMetricsLog(lines(run(), step(1, 0.9), step(2, 0.8), longer, step(3, 0.7)), "m");
  CHECK(stepsOf(log) == std::vector<int64_t>{1, 2, 3});
}

TEST_CASE("metrics log: what a killed writer leaves is skipped, other damage is an error") {
  std::string whole = lines(run(), step(1, 0.9), step(2, 0.8));
  std::string cut = whole.substr(0, whole.size() - 10); // the last line cut off, no newline
  MetricsLog log = parseMetricsLog(cut, "m.jsonl");
  CHECK(stepsOf(log) == std::vector<int64_t>{1});
  REQUIRE(log.skipped.size() == 1);
  CHECK(log.skipped[0].find("m.jsonl:3:") == 0);

  // The next run starts a new line after the cut-off one.
  log = parseMetricsLog(cut + "\n" + lines(run(1, "m.ckpt"), step(2, 0.7)), "m.jsonl");
  CHECK(stepsOf(log) == std::vector<int64_t>{1, 2});
  CHECK(log.skipped.size() == 1);

  // A cut-off line followed by anything but a run line is damage.
  CHECK_THROWS_WITH_AS(parseMetricsLog(cut + "\n" + lines(step(2, 0.7)), "m.jsonl"),
                       doctest::Contains("m.jsonl:3: invalid JSON"), Error);
  // A complete last line that is not JSON is too.
  CHECK_THROWS_WITH_AS(parseMetricsLog(whole + "{\"kind\n", "m.jsonl"), doctest::Contains("m.jsonl:4:"), Error);
  // Blank lines are nothing.
  CHECK(parseMetricsLog(lines(run()) + "\n\n" + lines(step(1, 1)), "m").steps.size() == 1);
}

TEST_CASE("metrics log: files that are not one, and malformed records") {
  auto fails = [](const std::string &text, const char *message) {
    CHECK_THROWS_WITH_AS(parseMetricsLog(text, "m.jsonl"), doctest::Contains(message), Error);
  };
  fails("", "m.jsonl holds no records");
  fails("label\ttext\n", "m.jsonl is not a kiln metrics log: its first line is not JSON");
  fails(lines(step(1, 0.5)), "m.jsonl is not a kiln metrics log: its first record is not a run record");
  fails("[1, 2]\n", "its first record is not a run record");
  std::string head = lines(run());
  std::string other = head;
  other.replace(other.find(kMetricsFormat), std::string(kMetricsFormat).size(), "kiln-metrics-9");
  fails(other, "m.jsonl:1: metrics format 'kiln-metrics-9', expected kiln-metrics-1");
  fails(head + "{\"kind\":\"step\",\"step\":1}\n", "m.jsonl:2: the step record has no 'epoch'");
  fails(head + R"({"kind":"step","step":"1","epoch":1,"batch":1,"loss":1,"lr":1,"examples":1,"tokens":1})" "\n",
        "m.jsonl:2: 'step' of the step record is string, not number");
  fails(head + R"({"kind":"step","step":0,"epoch":1,"batch":1,"loss":1,"lr":1,"examples":1,"tokens":1})" "\n",
        "'step' of the step record must be an integer of at least 1");
  fails(head + R"({"kind":"step","step":1.5,"epoch":1,"batch":1,"loss":1,"lr":1,"examples":1,"tokens":1})" "\n",
        "must be an integer");
  fails(head + "{\"kind\":\"checkpoint\"}\n", "m.jsonl:2: unknown record kind 'checkpoint'");
  fails(head + "7\n", "m.jsonl:2: a record is a JSON object");
  EpochRecord e = epoch(1);
  e.confusion = {{1, 2}};
  fails(head + lines(e), "one row per label (2)");
  e.confusion = {{1, 2}, {3}};
  fails(head + lines(e), "one count per label (2)");
  e.confusion = {{1, 2}, {3, -4}};
  fails(head + lines(e), "non-negative integers");
  e = epoch(1);
  e.seconds = -1;
  fails(head + lines(e), "'seconds' of the epoch record must not be negative");
  // Numbers the page scales its axes by are what they can be: a loss, a
  // rate and a scale are not negative, an accuracy and an F1 lie in [0, 1].
  fails(head + lines(step(1, -0.5)), "'loss' of the step record must not be negative");
  e = epoch(1);
  e.accuracy = 1.5;
  fails(head + lines(e), "'accuracy' of the epoch record must be between 0 and 1");
  e = epoch(1);
  e.macroF1 = -0.1;
  fails(head + lines(e), "'macro_f1' of the epoch record must be between 0 and 1");
}

TEST_CASE("metrics log: the writer appends line by line and ends a cut-off line") {
  std::string tmpl = (fs::temp_directory_path() / "kiln-metrics-XXXXXX").string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  fs::path dir = tmpl;
  std::string path = (dir / "metrics.jsonl").string();
  auto read = [&] {
    std::stringstream s;
    s << std::ifstream(path, std::ios::binary).rdbuf();
    return s.str();
  };
  {
    MetricsWriter w(path, false);
    w.write(run());
    w.write(step(1, 0.9));
    // Flushed: readable while the writer is still open.
    CHECK(parseMetricsLog(read(), path).steps.size() == 1);
  }
  std::ofstream(path, std::ios::app) << "{\"kind\":\"st"; // a killed writer
  {
    MetricsWriter w(path, false);
    w.write(run(1, "m.ckpt"));
    w.write(step(2, 0.8));
  }
  MetricsLog log = readMetricsLog(path);
  CHECK(stepsOf(log) == std::vector<int64_t>{1, 2});
  CHECK(log.skipped.size() == 1);
  CHECK(describeFile(path) == "a kiln metrics log");
  CHECK_NOTHROW(checkOutput("--report", path, OutputKind::MetricsLog, {}, false));
  CHECK_THROWS_WITH_AS(checkOutput("--loss-log", path, OutputKind::LossLog, {}, false),
                       doctest::Contains("holds a kiln metrics log, not a loss log"), Error);
  {
    MetricsWriter w(path, true); // replace
    w.write(run());
  }
  CHECK(read() == lines(run()));

  std::string page = (dir / "index.html").string();
  std::ofstream(page) << "<!doctype html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n" << kPageMark << "\n";
  CHECK(describeFile(page) == "a page kiln wrote");
  CHECK_NOTHROW(checkOutput("-o", page, OutputKind::Page, {}, false));
  std::string other = (dir / "other.html").string();
  std::ofstream(other) << "<!doctype html><p>mine</p>\n";
  CHECK_THROWS_WITH_AS(checkOutput("-o", other, OutputKind::Page, {}, false),
                       doctest::Contains("not a page kiln wrote; pass --force"), Error);
  fs::remove_all(dir);
}
