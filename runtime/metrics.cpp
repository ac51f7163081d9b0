//===- runtime/metrics.cpp - classification metrics -----------------------===//
//
// Every metric is a ratio of confusion-matrix counts and is 0 when its
// denominator is 0 (scikit-learn's zero_division=0), so that an empty class
// or an empty data set gives numbers rather than NaN. The report lays out the
// per-class table like scikit-learn's classification_report and then the
// matrix itself. Label names come from data files, so they are printed with
// control characters replaced and are measured in code points, not bytes,
// when columns are padded.
//
//===----------------------------------------------------------------------===//
#include "runtime/metrics.h"

#include <algorithm>
#include <cassert>
#include <fmt/format.h>
#include <string_view>

namespace kiln::runtime {

namespace {

double ratio(int64_t num, int64_t den) { return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den); }

/// Columns a UTF-8 string takes, counting one per code point (continuation
/// bytes don't start a character). Wide CJK characters are off by one each,
/// which a plain-text report accepts.
size_t width(const std::string &s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

/// A label as it may be printed: a tab or newline in a quoted CSV label
/// would break the layout.
std::string printable(const std::string &s) {
  std::string out = s;
  for (char &c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out;
}

/// At most `max` code points, the last two of them ".." when cut; cuts only
/// at character boundaries so that the result stays valid UTF-8.
std::string truncated(const std::string &s, size_t max) {
  if (width(s) <= max) return s;
  size_t keep = max - 2, seen = 0, i = 0;
  for (; i < s.size(); ++i) {
    if ((s[i] & 0xC0) != 0x80 && seen++ == keep) break;
  }
  return s.substr(0, i) + "..";
}

std::string padRight(const std::string &s, size_t w) { return s + std::string(w - std::min(w, width(s)), ' '); }
std::string padLeft(const std::string &s, size_t w) { return std::string(w - std::min(w, width(s)), ' ') + s; }

} // namespace

void ConfusionMatrix::add(int32_t truth, int32_t predicted) {
  assert(truth >= 0 && static_cast<size_t>(truth) < n_);
  assert(predicted >= 0 && static_cast<size_t>(predicted) < n_);
  ++counts_[static_cast<size_t>(truth) * n_ + static_cast<size_t>(predicted)];
}

void ConfusionMatrix::add(int32_t truth, int32_t predicted, int64_t times) {
  assert(truth >= 0 && static_cast<size_t>(truth) < n_);
  assert(predicted >= 0 && static_cast<size_t>(predicted) < n_);
  counts_[static_cast<size_t>(truth) * n_ + static_cast<size_t>(predicted)] += times;
}

int64_t ConfusionMatrix::total() const {
  int64_t t = 0;
  for (int64_t c : counts_) t += c;
  return t;
}

double ConfusionMatrix::accuracy() const {
  int64_t correct = 0;
  for (size_t c = 0; c < n_; ++c) correct += count(c, c);
  return ratio(correct, total());
}

double ConfusionMatrix::precision(size_t c) const {
  int64_t predicted = 0; // column c: everything predicted as c
  for (size_t t = 0; t < n_; ++t) predicted += count(t, c);
  return ratio(count(c, c), predicted);
}

double ConfusionMatrix::recall(size_t c) const { return ratio(count(c, c), support(c)); }

double ConfusionMatrix::f1(size_t c) const {
  // 2PR/(P+R) equals 2tp/(2tp+fp+fn) whenever tp > 0, and both are taken as
  // 0 otherwise; the count form is exact and needs no special case for P+R=0.
  int64_t tp = count(c, c);
  int64_t predicted = 0;
  for (size_t t = 0; t < n_; ++t) predicted += count(t, c);
  return ratio(2 * tp, predicted + support(c));
}

int64_t ConfusionMatrix::support(size_t c) const {
  int64_t s = 0; // row c: every example whose truth is c
  for (size_t p = 0; p < n_; ++p) s += count(c, p);
  return s;
}

double ConfusionMatrix::macroF1() const {
  if (n_ == 0) return 0.0;
  double sum = 0;
  for (size_t c = 0; c < n_; ++c) sum += f1(c);
  return sum / static_cast<double>(n_);
}

std::string ConfusionMatrix::report(const std::vector<std::string> &labelNames) const {
  // Classes without a name (a caller passing fewer names than classes) are
  // shown by index rather than read out of bounds.
  std::vector<std::string> names(n_);
  for (size_t c = 0; c < n_; ++c) names[c] = printable(c < labelNames.size() ? labelNames[c] : std::to_string(c));

  // Per-class table: full names, since each has a line of its own.
  size_t nameW = std::string_view("macro-F1").size();
  for (const std::string &n : names) nameW = std::max(nameW, width(n));
  std::string out = padRight("label", nameW) +
                    fmt::format("  {:>10} {:>10} {:>10} {:>10}\n", "precision", "recall", "f1-score", "support");
  for (size_t c = 0; c < n_; ++c)
    out += padRight(names[c], nameW) +
           fmt::format("  {:>10.4f} {:>10.4f} {:>10.4f} {:>10}\n", precision(c), recall(c), f1(c), support(c));
  out += "\n";
  out += padRight("accuracy", nameW) + fmt::format("  {:>10} {:>10} {:>10.4f} {:>10}\n", "", "", accuracy(), total());
  out += padRight("macro-F1", nameW) + fmt::format("  {:>10} {:>10} {:>10.4f} {:>10}\n", "", "", macroF1(), total());

  // Confusion matrix: names head the columns too, so long ones are cut to
  // keep the columns narrow.
  constexpr size_t kMaxName = 12;
  const std::string corner = "true \\ pred";
  std::vector<std::string> shortNames(n_);
  size_t rowW = width(corner), colW = 1;
  for (size_t c = 0; c < n_; ++c) {
    shortNames[c] = truncated(names[c], kMaxName);
    rowW = std::max(rowW, width(shortNames[c]));
    colW = std::max(colW, width(shortNames[c]));
  }
  for (int64_t v : counts_) colW = std::max(colW, std::to_string(v).size());

  out += "\nconfusion matrix (rows: true label, columns: predicted label)\n";
  out += padRight(corner, rowW);
  for (size_t p = 0; p < n_; ++p) out += "  " + padLeft(shortNames[p], colW);
  out += "\n";
  for (size_t t = 0; t < n_; ++t) {
    out += padRight(shortNames[t], rowW);
    for (size_t p = 0; p < n_; ++p) out += "  " + padLeft(std::to_string(count(t, p)), colW);
    out += "\n";
  }
  return out;
}

} // namespace kiln::runtime
