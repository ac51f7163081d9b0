//===- tests/fuzz/fuzz_metrics.cpp - libFuzzer target: metrics log and page -===//
//
// Feeds arbitrary bytes to parseMetricsLog (`kiln report DIR`, and train
// --report after every epoch), then draws the page of every log it accepts
// (tools/report_page.h). A rejected log must be a kiln::Error. An accepted
// one must satisfy what the page relies on: steps and epochs ascending,
// each once, and a confusion matrix with one row and column per label. The
// page must be valid UTF-8 (labels are cut by characters, not bytes) and
// hold no element the log's text could have smuggled in: every '<' of user
// text is escaped, so a page with "<script" or "<img" is a finding.
//
//===----------------------------------------------------------------------===//
#include "runtime/metrics_log.h"
#include "runtime/utf8.h"
#include "tests/fuzz/fuzz_support.h"
#include "tools/report_page.h"

#include <string>
#include <string_view>

using namespace kiln;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view text(reinterpret_cast<const char *>(data), size);
  runtime::MetricsLog log;
  bool valid = false;
  fuzz::expectOnlyKilnErrors([&] {
    log = runtime::parseMetricsLog(text, "<fuzz>");
    valid = true;
  });
  if (!valid) return 0;

  if (log.runs.empty()) fuzz::oracleFailure("an accepted metrics log has no run record", "");
  for (size_t i = 1; i < log.steps.size(); ++i)
    if (log.steps[i].step <= log.steps[i - 1].step) fuzz::oracleFailure("steps not strictly ascending", text);
  for (size_t i = 1; i < log.epochs.size(); ++i)
    if (log.epochs[i].epoch <= log.epochs[i - 1].epoch) fuzz::oracleFailure("epochs not strictly ascending", text);
  for (const runtime::EpochRecord &e : log.epochs) {
    if (!e.validated) continue;
    if (e.confusion.size() != e.labels.size()) fuzz::oracleFailure("a confusion matrix without a row per label", text);
    for (const auto &row : e.confusion)
      if (row.size() != e.labels.size()) fuzz::oracleFailure("a confusion row without a count per label", text);
  }

  std::string page = tools::reportPage(log);
  if (size_t at = utf8::firstInvalid(page); at != utf8::npos)
    fuzz::oracleFailure("the page is not valid UTF-8", page.substr(at > 40 ? at - 40 : 0, 80));
  for (const char *tag : {"<script", "<img", "<iframe", "<a ", "<link"})
    if (page.find(tag) != std::string::npos) fuzz::oracleFailure("the page holds markup from the log", tag);
  return 0;
}
